"""Build steps: what master.cfg's ``steps.*`` build, and how they run on a worker.

May import buildyard.master.workers, logs, data, db, mq, secrets, model, buildyard.protocol
and buildyard.common. Never builds, distributor or anything above."""

"""One build from start to finish: how master.cfg declares builders (``builder.BuilderConfig``)
and their steps (``factory.BuildFactory``); the running Builder, Build and locks come with issue 4.

May import buildyard.master.steps, workers, logs, data, db, mq, secrets, model,
buildyard.protocol and buildyard.common. Never buildyard.master.config (it sits above).
"""

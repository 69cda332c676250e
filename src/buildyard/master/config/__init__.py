"""master.cfg -> a frozen MasterConfig: ``loader.load_master_config`` runs the file and raises
``ConfigErrors`` with every mistake (each with its file and line), else returns a
``master_config.MasterConfig``. ``compat`` answers ``import buildbot...`` during the load;
``keys`` and ``references`` hold the checks.

May import buildyard.master.builds, steps, workers, logs, data, db, mq, secrets, model,
buildyard.protocol, buildyard.common, and the vocabulary outside the layers (buildyard.plugins,
buildyard.compat). Nothing below this layer imports it.
"""

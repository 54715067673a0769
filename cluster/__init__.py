"""Several replicas of the app behind HAProxy (scripts/serve.sh): the balancer's configuration (haproxy.py and
haproxy.cfg.template), one replica's status (status.py, served by replica.py) and all of them in one table
(report.py)."""

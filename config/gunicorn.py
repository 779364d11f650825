"""gunicorn settings used by `make run` (bind address and worker count come from the command line)."""

import os

from prometheus_client import multiprocess

# gunicorn 25.1+ opens a control socket at one fixed path per user; two instances (a dev run beside the CI
# smoke run) would fight over it, and nothing here uses it.
control_socket_disable = True

# Threads overlap the database round trips of a request (~half its time on the ingestion path);
# Python work still holds the GIL, so worker processes remain the way to use more cores.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))


def child_exit(server, worker):
    # Drop the dead worker's live-gauge files so a scrape does not keep reporting a process that is gone.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)

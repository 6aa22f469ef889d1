"""The plugin as a service on a host: the Flask app's HTTP edge, the job threads, metrics, gunicorn.

    web             the blueprint: check each call, record the job, answer at once
    runner          runs the job store's jobs in background threads of this process
    metrics         the Prometheus metrics, counted where things happen
    metrics_server  the metrics served from gunicorn's master, with the job store's gauges
    startup         gunicorn's master refuses bad settings before forking (exit 78)
    gunicorn_worker gthread, with request heads read before a thread takes them

`plugin.py` builds the app from these; the Cloud Function is `b2iconik.cloud`.
"""

"""The Google Cloud Function variant of the plugin (entry point: `main.iconik_handler`).

The function checks a custom action exactly as the Flask app does
(`b2iconik.callback`), answers 202 at once and hands the job to Google Cloud
Tasks: each task calls the function back on `POST /continue`, which advances
the job's workflow (`b2iconik.workflows`) by a bounded slice and queues the
next slice, until the job is done. The job's state travels in the task's
payload; nothing is kept on an instance's disk.

    config.py    settings from the environment, and which queue mode applies
    secrets.py   the shared secret from Secret Manager (CRC32C-checked, cached)
    auth.py      proof that a continuation call comes from the plugin's queue
    payload.py   the task payload: job id, step number, workflow state
    tasks.py     queues: Cloud Tasks, in-process (local runs), null (benchmarks)
    handler.py   routing, the click, the continuation
    cloudlog.py  JSON logs that Cloud Logging understands
    bench.py     timing the click's answer in-process
"""

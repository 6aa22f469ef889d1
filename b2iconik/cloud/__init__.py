"""The Google Cloud Function variant of the plugin (entry point: `main.iconik_handler`).

The function checks a custom action exactly as the Flask app does
(`b2iconik.edge.callback`), records the job in its job store, answers 202 at once
and hands the job to Google Cloud Tasks: each task names the job and a step and
calls the function back on `POST /continue`, which takes the step's lease in the
store, reads the job back, advances its workflow (`b2iconik.workflows`) by a
bounded slice, commits it and queues the next step, until the job is done.
Nothing is kept on an instance's disk.

    config.py          settings from the environment, which queue and which job store
    secrets.py         the shared secret from Secret Manager (CRC32C-checked, cached)
    auth.py            proof that a continuation call comes from the plugin's queue
    payload.py         the task payload: job id and step number
    tasks.py           queues: Cloud Tasks, in-process (local runs), null (benchmarks)
    jobstate.py        the job store: heads and chunks, conditional commits, leases per step,
                       asset leases, the count of live jobs
    chunks.py          how a job's state is cut into a head and chunks
    firestore_docs.py  the job store's documents in Firestore (in process: jobstate.py)
    slices.py          one slice: saving as the workflow goes, the audit trail
    views.py           its job records as the server's, for the job view (b2iconik/jobs/views.py)
    handler.py         routing, the click, the continuation
    scheduled.py       the scheduled cleanup (Cloud Scheduler)
    cloudlog.py        JSON logs that Cloud Logging understands
    bench.py           timing the click's answer; a whole job in local mode
"""

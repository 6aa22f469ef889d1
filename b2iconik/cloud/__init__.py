"""The Google Cloud Function variant of the plugin (entry point: `main.iconik_handler`).

The function checks a custom action exactly as the Flask app does
(`b2iconik.edge.callback`), records the job in its job store, answers 202 at once
and hands the job to Google Cloud Tasks: each task names the job and a step and
calls the function back on `POST /continue`, which takes the step's lease in the
store, reads the job back, advances its workflow (`b2iconik.workflows`) by a
bounded slice, commits it and queues the next step, until the job is done.
Nothing is kept on an instance's disk.

The host adapter, which only translates:
    routes.py          the HTTP routes: a call into the plugin's calls, the answer back
    replies.py         what a call gets back (`Reply`), apart from any web framework
    handler.py         the handler built from the settings (`build_handler`)
Running a job:
    continuation.py    a job run slice by slice, each step a task (POST /continue)
    slices.py          one slice: the workflow's job handle, saving as it goes, the audit trail
    tasks.py           queues: Cloud Tasks, in-process (local runs), null (benchmarks)
    payload.py         the task payload: job id and step number
    auth.py            proof that a continuation call comes from the plugin's queue
    scheduled.py       the scheduled cleanup (Cloud Scheduler)
The job store:
    jobstate.py        heads and chunks, conditional commits, leases per step, asset
                       leases, the count of live jobs
    chunks.py          how a job's state is cut into a head and chunks
    firestore_docs.py  the job store's documents in Firestore (in process: jobstate.py)
    views.py           its job records in the server's shapes, for the job view (b2iconik/jobs/views.py)
Around them:
    config.py          settings from the environment, which queue and which job store
    secrets.py         the shared secret from Secret Manager (CRC32C-checked, cached)
    cloudlog.py        JSON logs that Cloud Logging understands
    bench.py           timing the click's answer; a whole job in local mode
"""

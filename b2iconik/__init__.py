"""b2-iconik-plugin: move media between Backblaze B2 and a LucidLink Filespace from iconik.

The packages, by what they do:

    edge/            what a click must show before a job is queued (secret, body, identity)
    server/          the Flask app under gunicorn: HTTP routes, job threads, metrics
    cloud/           the same plugin as a Google Cloud Function (Cloud Tasks, Firestore)
    jobs/            the job model, the job stores' records, audit trail, Jobs panel, `jobs` command
    workflows/       Add, Remove and the Remove preview, as resumable steps; the verify rules
    report/          `report`: what is on LucidLink, as text, CSV, JSON or an HTML page
    cleanup/         `cleanup`: choosing what to take off LucidLink, and queuing its Remove
    selftest/        `selftest`: prove a deployment end to end
    custom_actions/  `create-actions`, `delete-actions`: the plugin's custom actions in iconik
    emulator/        a local iconik and storage gateway, for the demo and the tests

Beside them: `cli` (what every command shares), `config` (settings), `logs`, `output`,
`units`, `progress_bar`, `demo`, `bench`; `python -m b2iconik` lists the commands.
"""

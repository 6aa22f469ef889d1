"""What both hosts (the Flask app and the Cloud Function) check of a click before a job is queued.

    callback   the custom-action call: shared secret, body, action, selection, limits (framework-free)
    identity   who clicked: the click's token confirmed with iconik
"""

"""The cleanup: `python -m b2iconik cleanup` frees LucidLink of what is safely on B2.

    command.py   the command: the plan (a dry run), or --apply to queue it
    planning.py  the rule, choosing what goes (oldest first, down to a size), the plan and its
                 Remove job's state
    queue.py     queuing that Remove job in the plugin's job store, one live cleanup at a time
"""

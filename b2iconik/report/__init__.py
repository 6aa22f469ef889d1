"""The report: `python -m b2iconik report` says what is on LucidLink and what Remove could take off now.

    command.py  the command: the listing and one read per asset (workflows/inventory.py),
                the totals, and the text, CSV and JSON outputs
    html.py     the report as one self-contained HTML page with charts (--html)
"""

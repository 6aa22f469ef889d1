"""The self-test: `python -m b2iconik selftest` proves a real deployment end to end with one test asset.

    command.py        the run, top-down, and `main` (every name is importable from there)
    options.py        its arguments and settings, checked and made into the run's context
    context.py        the options, the run's context, and the test asset's records
    configuration.py  step 1: storages, plugin, shared secret, custom actions, the asset on B2
    actions.py        steps 2 and 3: Add and Remove posted as iconik sends them, and what they did
    results.py        the report: each check's result as it finishes, and the summary
"""

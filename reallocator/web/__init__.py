"""The pacing dashboard (`reallocator web`): campaigns, plans, alerts and approvals in a
browser, read from the audit store. Needs the `web` extra (pip install 'reallocator[web]');
nothing here is imported until the command runs."""

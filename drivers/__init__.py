"""Hardware in: each driver turns one kind of device into events and reports them through
``emit``. Drivers never decide and never touch the store or the broker. They import only
``sekisho.policies`` value types, and their hardware library only when started, so a node
loads just the libraries its config names.
"""

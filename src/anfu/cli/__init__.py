"""The ``anfu`` command line."""

"""The full reconcile: the whole history compared one month folder at a time (see :mod:`.walk`)."""

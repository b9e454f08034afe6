"""Model families: one adapter per family behind the ``ModelAdapter`` contract."""

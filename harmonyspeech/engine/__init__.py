"""Scheduling and execution of model work: work items, the scheduler, the worker."""

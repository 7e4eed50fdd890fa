"""Backfills: one queue message per (dataset, month) partition, processed by queue-triggered workers."""

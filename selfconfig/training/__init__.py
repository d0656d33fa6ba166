"""The training engine: one loop, written once; trainers differ only in small hooks."""

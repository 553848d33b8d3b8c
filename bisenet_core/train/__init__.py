"""Training recipe pieces; the loop is training/train.py.

Config, OHEM loss, lr schedule, optimiser groups, checkpoints, device/AMP/DDP runtime,
resumable sampling, validation.
"""

"""Distributed training: TF_CONFIG, cluster tasks and the local cluster."""

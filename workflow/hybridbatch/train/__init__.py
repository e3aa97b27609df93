"""Training: one loop (checkpoints, logs, GradCache), objectives, false-negative masks, a task per track."""

"""What runs SD3.5: the deployment loader (generate), its checks and memory model, the FP8
transforms' static variant, the tiny model for checks, and the bench harness."""

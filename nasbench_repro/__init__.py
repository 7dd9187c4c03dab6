"""nasbench-repro: rerun neural architecture search papers and measure what they cost."""

__version__ = "0.1.0"

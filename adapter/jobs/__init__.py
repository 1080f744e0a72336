"""What RQ runs: the entry points, one chain per periodic job, and the progress of long jobs."""

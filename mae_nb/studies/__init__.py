"""One module per chapter study: its comparison, statistics, verdict and tables, on mae_nb.stats."""

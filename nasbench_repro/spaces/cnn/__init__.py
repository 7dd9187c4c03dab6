"""The DARTS CNN cell space: `ops` (candidate operations), `supernet` (the search network
every differentiable method shares), `networks` (genotypes stacked into the evaluation
networks) and `stems` (the input stems and reduction positions both kinds of network use)."""

"""Networks of the DARTS CNN cell space: the search supernet (`search`) and the evaluation
networks trained from scratch (`evaluation`)."""


def reduction_layers(layers: int) -> frozenset[int]:
    """Cells that halve the resolution and double the channels: at 1/3 and 2/3 of the depth (DARTS)."""
    return frozenset({layers // 3, 2 * layers // 3})

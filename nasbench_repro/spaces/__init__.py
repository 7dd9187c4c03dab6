"""Search spaces: what an architecture is, and the networks that run one.

- `genotypes`: the discrete architectures every space shares the vocabulary of (CNN cell
  pairs, recurrent cells), their JSON form, the safe parser for pasted strings, the
  published cells and DARTS' derivation rule.
- `cnn`: the DARTS convolutional cell space (and NASP's 12-op variant): candidate ops, the
  search supernet, and the evaluation networks for CIFAR-10 and ImageNet.
- `rnn`: the DARTS recurrent cell space: the genotype's cell, the search cell, and the
  language model around either (PTB, WikiText-2).
"""

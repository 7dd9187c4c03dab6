"""`nasbench genotype`: list, show and measure published or pasted genotypes."""

from __future__ import annotations

import argparse
import json

from tabulate import tabulate

NAME_HELP = "a published name (see `nasbench genotype list`), a JSON file, or a pasted Genotype(...) string"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("genotype", help="list, show and measure genotypes",
                                   description="Published and pasted genotypes of the DARTS cell spaces.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="the published genotypes and their sources")
    listing.set_defaults(handler=handle_list)

    show = actions.add_parser("show", help="print a genotype in the official form, with its source and notes")
    show.add_argument("name", metavar="NAME", help=NAME_HELP)
    show.set_defaults(handler=handle_show)

    cost = actions.add_parser("cost", help="parameters and multiply-adds of the paper evaluation network",
                              description="Parameters (auxiliary head excluded) and multiply-adds of one image in "
                                          "the paper network: CIFAR-10 C=36, 20 cells, 32x32; ImageNet C=48, "
                                          "14 cells, 224x224.")
    cost.add_argument("name", metavar="NAME", help=NAME_HELP)
    cost.add_argument("--dataset", choices=["cifar10", "imagenet"], default="cifar10")
    cost.add_argument("--convention", choices=["conv", "ptflops"], default="conv",
                      help="conv: convolutions and linear layers only (default); ptflops: also BN, ReLU and "
                           "pooling, as the ptflops package counts (matches the PC-DARTS and P-DARTS tables)")
    cost.add_argument("--json", action="store_true", help="print {params_millions, madds_millions} as JSON")
    cost.set_defaults(handler=handle_cost)


def handle_list(args: argparse.Namespace) -> int:
    from nasbench_repro.spaces.genotypes import published_genotypes

    rows = [[entry.kind, entry.name, ", ".join(entry.aliases), entry.source] for entry in published_genotypes()]
    print(tabulate(rows, headers=["kind", "name", "aliases", "source"]))
    return 0


def handle_show(args: argparse.Namespace) -> int:
    from nasbench_repro.spaces.genotypes import find_published, resolve_genotype

    genotype = resolve_genotype(args.name)
    print(genotype)
    entry = find_published(args.name)
    if entry is not None:
        for label, value in (("name", entry.title or entry.name), ("aliases", ", ".join(entry.aliases)),
                             ("source", entry.source), ("search", entry.search), ("note", entry.note)):
            if value:
                print(f"{label}: {value}")
    return 0


def handle_cost(args: argparse.Namespace) -> int:
    from nasbench_repro.cost import genotype_cost

    cost = genotype_cost(args.name, args.dataset, args.convention)
    if args.json:
        print(json.dumps(cost))
    else:
        print(f"{args.dataset}: {cost['params_millions']:.3f}M parameters (auxiliary head excluded), "
              f"{cost['madds_millions']:.1f}M multiply-adds ({args.convention} convention)")
    return 0

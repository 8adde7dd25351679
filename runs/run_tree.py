"""Run list selectors beyond selectors.py: the list as a tree (the pager's total and the
sorted ids are runs/selectors/run_pages.py's). With
child runs included, a page is a page of the matching runs whose parent does not match
(top-level runs, and children whose parent the search left out), each followed by its matching
descendants in tree order, siblings in the list's sort.
"""

from dataclasses import dataclass, field

from django.db.models import Exists, OuterRef, Q, QuerySet

from runs import limits
from runs.models import Run
from runs.selectors import RunPage, run_rows, run_sort, scalar_metric_names, with_run_details
from runs.selectors.run_pages import Order, RunCount, RunSet, run_page_ids


@dataclass
class TreePage(RunPage):
    depths: dict[int, int] = field(default_factory=dict)  # run pk → 0 for a page root
    child_counts: dict[int, int] = field(default_factory=dict)  # run pk → children shown
    truncated: bool = False  # more descendants than TREE_DESCENDANTS_MAX


def tree_roots(runs: QuerySet[Run]) -> QuerySet[Run]:
    """The matching runs whose parent does not match: the tree's page unit."""
    return runs.filter(Q(parent__isnull=True) | ~Q(parent_id__in=runs.values("pk")))


def tree_root_set(runs: RunSet) -> RunSet:
    """tree_roots of both forms; the probe asks, per candidate, whether its parent matches."""
    parent_matches = Exists(runs.probe.filter(pk=OuterRef("parent_id")))
    return RunSet(
        tree_roots(runs.members),
        runs.probe.filter(Q(parent__isnull=True) | ~parent_matches),
        runs.workspace_id,
    )


CHILDREN_BY_ID_MAX = 50_000


def _children(runs: RunSet, level: list[int]) -> QuerySet[Run]:
    """The matching children of `level`, found from the parent index first: with the
    workspace's filters in the same query, SQLite may scan the whole workspace instead (its
    statistics say little about parent_id when most runs have none: 0.8 s on 1M runs)."""
    ids = list(
        Run.objects.filter(parent_id__in=level).values_list("pk", flat=True)[
            : CHILDREN_BY_ID_MAX + 1
        ]
    )
    if len(ids) > CHILDREN_BY_ID_MAX:  # a huge sweep: let the database sort it out
        return runs.probe.filter(parent_id__in=level)
    return runs.probe.filter(pk__in=ids)


def run_tree_page(
    *,
    runs: RunSet,
    order: Order,
    columns: list,
    offset: int = 0,
    limit: int = 100,
    count: RunCount | None = None,
) -> TreePage:
    """`runs` is the unsorted matching set. Roots are paged like the flat list (limit+1 ids,
    run_pages.run_page_ids; `count` is the roots' total); descendants are read one query per
    level, each level in the list's sort, checked against the filters run by run (a level is
    a few hundred runs)."""
    page = run_page_ids(
        runs=tree_root_set(runs), order=order, offset=offset, limit=limit, count=count
    )
    root_ids, has_next = page.ids, page.has_next
    below: dict[int, list[int]] = {}
    level, budget, truncated = root_ids, limits.TREE_DESCENDANTS_MAX, False
    while level and budget > 0:
        children = list(
            run_sort(runs=_children(runs, level), sort=order.key).values_list("pk", "parent_id")[
                : budget + 1
            ]
        )
        if len(children) > budget:
            truncated, children = True, children[:budget]
        budget -= len(children)
        for pk, parent_id in children:
            below.setdefault(parent_id, []).append(pk)
        level = [pk for pk, _ in children]
    if level and budget <= 0:
        truncated = truncated or runs.probe.filter(parent_id__in=level).exists()

    ordered: list[tuple[int, int]] = []
    stack = [(pk, 0) for pk in reversed(root_ids)]
    while stack:
        pk, depth = stack.pop()
        ordered.append((pk, depth))
        stack += [(child, depth + 1) for child in reversed(below.get(pk, []))]
    by_id = {run.pk: run for run in with_run_details(Run.objects.filter(pk__in=dict(ordered)))}
    found = [by_id[pk] for pk, _ in ordered if pk in by_id]
    names = scalar_metric_names(runs=found) if found else []
    return TreePage(
        rows=run_rows(runs=found, columns=columns),
        has_next=has_next,
        metric_names=names,
        depths=dict(ordered),
        child_counts={pk: len(kids) for pk, kids in below.items()},
        truncated=truncated,
    )

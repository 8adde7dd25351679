"""Run list selectors beyond selectors.py: the pager's total, and the list as a tree. With
child runs included, a page is a page of the matching runs whose parent does not match
(top-level runs, and children whose parent the search left out), each followed by its matching
descendants in tree order, siblings in the list's sort.
"""

from dataclasses import dataclass, field

from django.db.models import Q, QuerySet

from runs import limits
from runs.models import Run
from runs.selectors import RunPage, run_rows, run_sort, scalar_metric_names, with_run_details


@dataclass
class TreePage(RunPage):
    depths: dict[int, int] = field(default_factory=dict)  # run pk → 0 for a page root
    child_counts: dict[int, int] = field(default_factory=dict)  # run pk → children shown
    truncated: bool = False  # more descendants than TREE_DESCENDANTS_MAX


def tree_roots(runs: QuerySet[Run]) -> QuerySet[Run]:
    """The matching runs whose parent does not match: the tree's page unit."""
    return runs.filter(Q(parent__isnull=True) | ~Q(parent_id__in=runs.values("pk")))


def run_tree_page(
    *, runs: QuerySet[Run], sort: str, columns: list, offset: int = 0, limit: int = 100
) -> TreePage:
    """`runs` is the unsorted matching set. Roots are paged like the flat list (limit+1 ids, no
    COUNT); descendants are read one query per level, each level in the list's sort."""
    roots = run_sort(runs=tree_roots(runs), sort=sort)
    root_ids = list(roots.values_list("pk", flat=True)[offset : offset + limit + 1])
    has_next = len(root_ids) > limit
    root_ids = root_ids[:limit]
    below: dict[int, list[int]] = {}
    level, budget, truncated = root_ids, limits.TREE_DESCENDANTS_MAX, False
    while level and budget > 0:
        children = list(
            run_sort(runs=runs.filter(parent_id__in=level), sort=sort).values_list(
                "pk", "parent_id"
            )[: budget + 1]
        )
        if len(children) > budget:
            truncated, children = True, children[:budget]
        budget -= len(children)
        for pk, parent_id in children:
            below.setdefault(parent_id, []).append(pk)
        level = [pk for pk, _ in children]
    if level and budget <= 0:
        truncated = truncated or runs.filter(parent_id__in=level).exists()

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


def run_total(*, runs: QuerySet[Run], cap: int = limits.LIST_TOTAL_MAX) -> int:
    """How many runs match, counted up to `cap` + 1 (the pager shows "10,000+" past it): a
    bounded COUNT over a LIMIT subquery, so a huge workspace costs at most `cap` index rows."""
    return runs.order_by()[: cap + 1].count()

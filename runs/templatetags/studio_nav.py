"""The top bar's workspace switcher: one query for the signed-in user's workspaces."""

from django import template

from runs import selectors

register = template.Library()


@register.inclusion_tag("runs/includes/workspace_switcher.html", takes_context=True)
def workspace_switcher(context):
    request = context.get("request")
    user = getattr(request, "user", None)
    memberships = (
        list(selectors.membership_list(user=user)) if user and user.is_authenticated else []
    )
    return {"memberships": memberships, "workspace": context.get("workspace")}

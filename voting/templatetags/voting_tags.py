from django import template

from voting import selectors
from voting.services import ratings

register = template.Library()


@register.inclusion_tag("voting/_case_audience.html", takes_context=True)
def case_audience(context, case, role):
    """The bench panel's summary, the draw link and the party's rating, for the case page."""
    user = context["request"].user
    panel = selectors.panel_for_case(case)
    party = case.parties.filter(user=user).first() if user.is_authenticated else None
    rating = getattr(party, "rating", None) if party and hasattr(party, "rating") else None
    from mediation_room.selectors import open_hearing

    return {
        "case": case,
        "live_hearing": open_hearing(case),
        "panel": panel,
        "summary": selectors.panel_summary(panel)
        if panel and panel.state == "summarised"
        else None,
        "can_draw": role in ("coordinator", "admin"),
        "can_rate": party is not None and case.status in ratings.RATEABLE,
        "rating": rating,
        "request": context["request"],
    }

"""Pages of supervision (督办) and statistics. Thin: parse, call a selector or service, render."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.paginator import Paginator
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.selectors import communities_for_coordinator, is_coordinator
from cloudbench.actions import form_submit

from . import lifecycle, selectors
from .services import hearing_reschedule
from .supervision import exports, periodic, statistics
from .supervision import selectors as sup_selectors
from .supervision import services as sup_services
from .supervision.forms import AnswerForm, NoticeForm, RescheduleForm, StatsFilterForm

PUBLIC_CACHE_SECONDS = 600


def _require_coordinator(request: HttpRequest) -> None:
    if not is_coordinator(request.user):
        raise Http404


# --- supervision -----------------------------------------------------------------------------------------


@login_required
def supervision_list(request: HttpRequest) -> HttpResponse:
    """The coordinator's supervision list: overdue cases with how late, and open notices."""
    _require_coordinator(request)
    now = timezone.now()
    page = Paginator(sup_selectors.overdue_cases(request.user, now=now), 50).get_page(
        request.GET.get("page")
    )
    rows = [(case, sup_selectors.lateness(case.stage_deadline, now)) for case in page]
    context = {
        "page": page,
        "rows": rows,
        "now": now,
        "notices": sup_selectors.open_notices_for_coordinator(request.user)[:100],
        "last_scan": periodic.last_run("supervision_scan"),
    }
    return render(request, "supervision/list.html", context)


@login_required
def notice_new(request: HttpRequest, tracking_number: str) -> HttpResponse:
    case, role = selectors.access_case_for_user(request.user, tracking_number)
    if role not in ("coordinator", "admin"):
        raise Http404
    recipients = sup_selectors.notice_recipients(case)
    owners = sup_selectors.stage_owners(case)
    initial = {
        "to_user": owners[0].pk if owners else None,
        "due": timezone.localtime(lifecycle.add_working_days(timezone.now(), 2)).replace(
            second=0, microsecond=0
        ),
    }
    form = NoticeForm(request.POST or None, recipients=recipients, initial=initial)
    if request.method == "POST" and form.is_valid():
        to_user = next(u for u in recipients if u.pk == form.cleaned_data["to_user"])
        form_submit(
            form,
            lambda: sup_services.supervision_notice_issue(
                case=case,
                issued_by=request.user,
                to_user=to_user,
                text=form.cleaned_data["text"],
                due=form.cleaned_data["due"],
            ),
        )
        if not form.errors:
            messages.success(request, _("The supervision notice is sent."))
            return redirect("mediation_room:supervision")
    status = 400 if request.method == "POST" else 200
    return render(
        request, "supervision/notice_new.html", {"case": case, "form": form}, status=status
    )


@login_required
def notices_mine(request: HttpRequest) -> HttpResponse:
    notices = sup_selectors.notices_to_user(request.user)[:200]
    return render(request, "supervision/notices.html", {"notices": notices})


@login_required
def notice_detail(request: HttpRequest, pk: int) -> HttpResponse:
    notice = sup_selectors.access_notice_for_user(request.user, pk)
    if notice is None:
        raise Http404
    can_answer = notice.is_open and notice.to_user_id == request.user.pk
    form = AnswerForm(request.POST or None)
    if request.method == "POST":
        if not can_answer:
            raise Http404
        if form.is_valid():
            form_submit(
                form,
                lambda: sup_services.supervision_notice_answer(
                    notice=notice, actor=request.user, answer=form.cleaned_data["answer"]
                ),
            )
            if not form.errors:
                messages.success(request, _("Your answer is recorded."))
                return redirect("mediation_room:notice_detail", pk=notice.pk)
    status = 400 if request.method == "POST" else 200
    context = {"notice": notice, "form": form, "can_answer": can_answer}
    return render(request, "supervision/notice_detail.html", context, status=status)


@login_required
def hearing_reschedule_view(request: HttpRequest, public_id: str) -> HttpResponse:
    hearing, role = selectors.access_hearing_for_user(request.user, public_id)
    if role not in ("expert", "coordinator", "admin"):
        raise Http404
    initial = {
        "starts_at": timezone.localtime(hearing.starts_at),
        "ends_at": timezone.localtime(hearing.ends_at),
    }
    form = RescheduleForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        form_submit(
            form,
            lambda: hearing_reschedule(
                hearing=hearing,
                actor=request.user,
                starts_at=form.cleaned_data["starts_at"],
                ends_at=form.cleaned_data["ends_at"],
                reason=form.cleaned_data["reason"],
            ),
        )
        if not form.errors:
            messages.success(request, _("The hearing is moved; everyone has been told."))
            return redirect("frontend:case_detail", tracking_number=hearing.case.tracking_number)
    status = 400 if request.method == "POST" else 200
    return render(
        request, "supervision/reschedule.html", {"hearing": hearing, "form": form}, status=status
    )


# --- statistics ----------------------------------------------------------------------------------------------


def _default_start() -> date:
    """The first day of the month eleven months ago: a year of months on the chart."""
    today = timezone.localdate()
    month = today.month - 11
    year = today.year
    while month < 1:
        month += 12
        year -= 1
    return today.replace(year=year, month=month, day=1)


def _stats_scope(request: HttpRequest) -> tuple[StatsFilterForm, statistics.Scope, dict]:
    communities = list(communities_for_coordinator(request.user).select_related("street"))
    data = request.GET.dict() if request.GET else {"start": _default_start().isoformat()}
    form = StatsFilterForm(data, communities=communities)
    filters = form.cleaned_data if form.is_valid() else {}
    tz = timezone.get_current_timezone()
    start = filters.get("start")
    end = filters.get("end")
    period = statistics.Period(
        start=datetime.combine(start, time.min, tzinfo=tz) if start else None,
        end=datetime.combine(end + timedelta(days=1), time.min, tzinfo=tz) if end else None,
    )
    scope = statistics.coordinator_scope(
        request.user, community_id=filters.get("community"), period=period
    )
    return form, scope, filters


@login_required
def stats_dashboard(request: HttpRequest) -> HttpResponse:
    _require_coordinator(request)
    form, scope, _filters = _stats_scope(request)
    board = statistics.dashboard(scope)
    context = {
        "form": form,
        "board": board,
        "charts": statistics.chart_data(board),
        "export_query": urlencode({k: v for k, v in form.data.items() if v}),
    }
    return render(request, "supervision/dashboard.html", context)


def _export_name(ext: str) -> str:
    return f"cloudbench-cases-{timezone.localdate():%Y%m%d}.{ext}"


@login_required
def stats_export_csv(request: HttpRequest) -> StreamingHttpResponse:
    _require_coordinator(request)
    _form, scope, _filters = _stats_scope(request)
    response = StreamingHttpResponse(exports.csv_stream(scope.cases()), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{_export_name("csv")}"'
    return response


@login_required
def stats_export_xlsx(request: HttpRequest) -> FileResponse:
    _require_coordinator(request)
    _form, scope, _filters = _stats_scope(request)
    return FileResponse(
        exports.xlsx_file(scope.cases()),
        as_attachment=True,
        filename=_export_name("xlsx"),
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )


def stats_public(request: HttpRequest) -> HttpResponse:
    """Anonymised headline figures for everyone (no names, no communities' own figures)."""
    year = timezone.localdate().year
    key = f"stats:public:{year}"
    figures = cache.get(key)
    if figures is None:
        figures = {
            "all_time": statistics.public_headline(),
            "this_year": statistics.public_headline(year=year),
        }
        cache.set(key, figures, PUBLIC_CACHE_SECONDS)
    return render(request, "supervision/public.html", {"figures": figures, "year": year})

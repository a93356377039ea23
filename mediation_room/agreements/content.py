"""The document itself: the template per case category, the JSON shape of a version, its rendering
to readable lines, and the comparison of two versions.

A version's `content`:
    {"title", "case": {"tracking_number", "category", "category_label"},
     "parties": [{"role", "role_label", "name"}], "mediator": {"name"},
     "facts", "terms": [{"key", "obligor", "action", "amount", "due_date"}],
     "performance_check", "effect"}
`amount` is a decimal string ("12000.00") or "", `due_date` an ISO date or "".
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError

from ..models import Case, Category, PartyRole

TITLE = "人民调解协议书"

ROLE_LABELS = {
    PartyRole.APPLICANT: "申请人",
    PartyRole.RESPONDENT: "被申请人",
    "expert": "人民调解员",
}

# The standard statement of effect, as commonly printed on 人民调解协议书 (人民调解法 第二十九条、
# 第三十一条、第三十三条).
EFFECT_STATEMENT = (
    "本协议自各方当事人签名、人民调解员签名之日起生效。"
    "根据《中华人民共和国人民调解法》第三十一条，经人民调解委员会调解达成的调解协议，具有法律约束力，"
    "当事人应当按照约定履行；人民调解委员会应当对调解协议的履行情况进行监督，督促当事人履行约定的义务。"
    "根据该法第三十三条，经人民调解委员会调解达成调解协议后，双方当事人认为有必要的，"
    "可以自调解协议生效之日起三十日内共同向人民法院申请司法确认；人民法院依法确认调解协议有效，"
    "一方当事人拒绝履行或者未全部履行的，对方当事人可以向人民法院申请强制执行。"
)

DEFAULT_CHECK = (
    "由人民调解委员会在各项义务履行期限届满后进行回访，向双方当事人核实履行情况；"
    "一方未按期履行的，人民调解委员会督促履行，并可告知另一方依法申请司法确认或提起诉讼。"
)


@dataclass(frozen=True)
class Template:
    facts: str
    terms: tuple[tuple[str, str, str], ...]  # (obligor, action, amount)
    check: str = DEFAULT_CHECK


TEMPLATES: dict[str, Template] = {
    Category.UNPAID_WAGES: Template(
        facts="申请人在被申请人处务工，双方因劳动报酬支付发生纠纷。经核对，被申请人尚欠申请人工资____元。",
        terms=(
            ("respondent", "向申请人支付拖欠的劳动报酬", "0.00"),
            ("applicant", "收到上述款项后不再就本次劳动报酬向被申请人提出其他主张", ""),
        ),
        check="被申请人以银行转账方式付款，申请人收到后向人民调解委员会确认；" + DEFAULT_CHECK,
    ),
    Category.NEIGHBOURS: Template(
        facts="双方系相邻住户，因噪音、漏水、通行等相邻关系问题发生纠纷。",
        terms=(
            ("respondent", "停止产生影响相邻方正常生活的行为并完成相应整改", ""),
            ("respondent", "赔偿申请人因此造成的损失", "0.00"),
        ),
    ),
    Category.PROPERTY: Template(
        facts="申请人系小区业主，与物业服务企业因物业服务质量及费用问题发生纠纷。",
        terms=(
            ("respondent", "完成相关设施维修并书面告知申请人", ""),
            ("applicant", "在维修完成后缴清物业服务费", "0.00"),
        ),
    ),
    Category.FAMILY: Template(
        facts="双方系家庭成员，因赡养、抚养或家庭财产等问题发生纠纷。",
        terms=(("respondent", "按月支付赡养费", "0.00"),),
    ),
    Category.CONSUMER: Template(
        facts="申请人在被申请人处消费，双方因商品或服务质量、退款等问题发生纠纷。",
        terms=(("respondent", "向申请人退还款项", "0.00"),),
    ),
    Category.HOUSING_LAND: Template(
        facts="双方因房屋、宅基地或土地使用边界等问题发生纠纷。",
        terms=(("respondent", "拆除占用部分并恢复原状", ""),),
    ),
    Category.OTHER: Template(
        facts="双方因________发生纠纷。",
        terms=(("respondent", "履行约定义务", ""),),
    ),
}

TERM_KEY = re.compile(r"^t\d{1,4}$")
MAX_TERMS = 30
MAX_ACTION = 300
MAX_FACTS = 4000
MAX_CHECK = 1000
MAX_AMOUNT = Decimal("100000000")


def case_header(case: Case) -> dict[str, Any]:
    return {
        "tracking_number": case.tracking_number,
        "category": case.category,
        "category_label": str(Category(case.category).label),
    }


def parties_block(case: Case) -> list[dict[str, str]]:
    return [
        {"role": p.role, "role_label": ROLE_LABELS[p.role], "name": p.name}
        for p in case.parties.order_by("role", "pk")
    ]


def from_template(case: Case) -> dict[str, Any]:
    template = TEMPLATES.get(case.category, TEMPLATES[Category.OTHER])
    terms = [
        {"key": f"t{i}", "obligor": obligor, "action": action, "amount": amount, "due_date": ""}
        for i, (obligor, action, amount) in enumerate(template.terms, start=1)
    ]
    return {
        "title": TITLE,
        "case": case_header(case),
        "parties": parties_block(case),
        "mediator": {"name": case.expert.display_name if case.expert else ""},
        "facts": template.facts,
        "terms": terms,
        "performance_check": template.check,
        "effect": EFFECT_STATEMENT,
    }


def normalize(case: Case, *, facts: str, terms: list[dict[str, Any]], check: str) -> dict:
    """Validate the editable parts and build a full content dict. The parties, the case header
    and the statement of effect always come from the case and the standard text, not the form."""
    facts = (facts or "").strip()
    check = (check or "").strip()
    errors: dict[str, str] = {}
    if not facts:
        errors["facts"] = "请填写纠纷事实。"
    elif len(facts) > MAX_FACTS:
        errors["facts"] = f"纠纷事实不超过{MAX_FACTS}字。"
    if len(check) > MAX_CHECK:
        errors["performance_check"] = f"履行方式不超过{MAX_CHECK}字。"
    clean_terms: list[dict[str, str]] = []
    seen: set[str] = set()
    used = [int(t["key"][1:]) for t in terms if TERM_KEY.match(str(t.get("key") or ""))]
    next_key = max(used, default=0) + 1
    for index, raw in enumerate(terms, start=1):
        action = str(raw.get("action") or "").strip()
        if not action:
            continue  # an empty row of the form
        key = str(raw.get("key") or "")
        if not TERM_KEY.match(key) or key in seen:
            key = f"t{next_key}"
            next_key += 1
        seen.add(key)
        obligor = str(raw.get("obligor") or "")
        if obligor not in (PartyRole.APPLICANT, PartyRole.RESPONDENT):
            errors[f"terms-{index}"] = "请选择履行义务的一方。"
        if len(action) > MAX_ACTION:
            errors[f"terms-{index}"] = f"每条不超过{MAX_ACTION}字。"
        amount = _amount(raw.get("amount"), errors, index)
        due = _due(raw.get("due_date"), errors, index)
        clean_terms.append(
            {"key": key, "obligor": obligor, "action": action, "amount": amount, "due_date": due}
        )
    if not clean_terms:
        errors["terms"] = "至少需要一条协议内容。"
    if len(clean_terms) > MAX_TERMS:
        errors["terms"] = f"协议内容不超过{MAX_TERMS}条。"
    if errors:
        raise ValidationError(errors)
    return {
        "title": TITLE,
        "case": case_header(case),
        "parties": parties_block(case),
        "mediator": {"name": case.expert.display_name if case.expert else ""},
        "facts": facts,
        "terms": clean_terms,
        "performance_check": check or DEFAULT_CHECK,
        "effect": EFFECT_STATEMENT,
    }


def _amount(value: Any, errors: dict[str, str], index: int) -> str:
    text = str(value or "").strip().replace(",", "").replace("¥", "").replace("￥", "")
    if not text:
        return ""
    try:
        amount = Decimal(text)
    except InvalidOperation:
        errors[f"terms-{index}"] = "金额请填写数字，例如 12000 或 12000.50。"
        return ""
    if not amount.is_finite() or amount < 0 or amount >= MAX_AMOUNT:
        errors[f"terms-{index}"] = "金额超出范围。"
        return ""
    return f"{amount.quantize(Decimal('0.01'))}"


def _due(value: Any, errors: dict[str, str], index: int) -> str:
    if isinstance(value, date):
        return value.isoformat()
    text = str(value or "").strip()
    if not text:
        return ""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        errors[f"terms-{index}"] = "日期格式为 2026-12-31。"
        return ""


def money(amount: str) -> str:
    return f"¥{Decimal(amount):,.2f}" if amount else ""


def party_name(content: dict, role: str) -> str:
    for party in content.get("parties", []):
        if party["role"] == role:
            return party["name"]
    return ROLE_LABELS.get(role, role)


def term_sentence(content: dict, term: dict) -> str:
    """ "被申请人李四于2026年12月31日前向申请人支付拖欠的劳动报酬，金额人民币¥12,000.00元。" """
    who = f"{ROLE_LABELS.get(term['obligor'], '')}{party_name(content, term['obligor'])}"
    when = ""
    if term.get("due_date"):
        d = date.fromisoformat(term["due_date"])
        when = f"于{d.year}年{d.month}月{d.day}日前"
    text = f"{who}{when}{term['action']}"
    if term.get("amount"):
        text += f"，金额人民币{money(term['amount'])}元"
    return text + "。"


CHINESE_NUMERALS = "一二三四五六七八九十"


def ordinal(n: int) -> str:
    if n <= 10:
        return CHINESE_NUMERALS[n - 1]
    if n < 20:
        return "十" + CHINESE_NUMERALS[n - 11]
    tens, ones = divmod(n, 10)
    return CHINESE_NUMERALS[tens - 1] + "十" + (CHINESE_NUMERALS[ones - 1] if ones else "")


def to_lines(content: dict) -> list[str]:
    """The version as the lines a reader sees; what the comparison works on."""
    lines = [content.get("title", TITLE)]
    for party in content.get("parties", []):
        lines.append(f"{party['role_label']}：{party['name']}")
    lines.append(f"人民调解员：{content.get('mediator', {}).get('name', '')}")
    lines.append("纠纷事实：")
    lines.extend(content.get("facts", "").splitlines() or [""])
    lines.append("经调解，双方自愿达成如下协议：")
    for n, term in enumerate(content.get("terms", []), start=1):
        lines.append(f"{ordinal(n)}、{term_sentence(content, term)}")
    lines.append("履行方式及核查：")
    lines.extend(content.get("performance_check", "").splitlines() or [""])
    lines.append(content.get("effect", ""))
    return lines


@dataclass(frozen=True)
class DiffLine:
    op: str  # "same" | "added" | "removed"
    text: str


def compare(old: dict | None, new: dict) -> list[DiffLine]:
    """Line-by-line comparison of two versions, for the 'what changed' page."""
    before = to_lines(old) if old else []
    after = to_lines(new)
    out: list[DiffLine] = []
    for line in difflib.ndiff(before, after):
        tag, text = line[:2], line[2:]
        if tag == "  ":
            out.append(DiffLine("same", text))
        elif tag == "- ":
            out.append(DiffLine("removed", text))
        elif tag == "+ ":
            out.append(DiffLine("added", text))
    return out

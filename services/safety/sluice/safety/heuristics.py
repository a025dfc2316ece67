"""Prompt-injection and jailbreak heuristics, as classifiers rules can name.

A classifier scores a text from 0 to 1 and points at the phrases that made
the score; a rule fires when the score reaches its threshold. These are
pattern heuristics: each signal is a phrase family seen in published
attacks, with a weight, combined as a noisy-or so two weak signals make a
stronger one. They are one half of the standard pack's injection rules; the
other half is the learned model (`model.py`), and a rule combines both
(`policy.py`, `match: {any: [...]}` / `{all: [...]}`). A model-backed
classifier plugs in the same way, with `register()`.

- prompt_injection: instructions to ignore, void or replace the operator's
  instructions (paraphrases too, in 11 languages), requests to reveal them,
  forged role markers and transcripts, and text planted for an AI reader
  ("note to the AI assistant: ...").
- jailbreak: named personas (DAN, STAN, AIM, ...), "developer mode" aimed at
  a model, role-play or hypotheticals that remove the rules.
- hidden_instructions: text a reader does not see or cannot read: Unicode tag
  characters, runs of zero-width characters, base64/rot13-encoded or
  HTML-hidden text that carries either of the above.

Obfuscation is undone before matching: besides the detectors' normalisation
(look-alike letters, NFKC, invisible characters), each text is also read as
leetspeak ("1gn0r3"), with spaced-out letters joined ("i g n o r e") and
reversed, each only when the text shows the trick. Every scan is linear in
the text: anchors are plain substring tests, patterns have bounded
repetitions, and hidden markup is found with `str.find`, never by a lazy
scan from every `<!--`.
"""

from __future__ import annotations

import binascii
import bisect
import codecs
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import re2

from sluice.safety.detectors import Finding, Registry, Text


@dataclass(frozen=True)
class Signal:
    """One phrase family: `pattern` (Python re, on the normalised text) with
    its `weight`; `anchors` (lower-case substrings one of which every match
    holds: what decides whether a pattern RE2 cannot take runs at all);
    `near`, a second pattern that must start within a distance after the
    match (a persona's name and what the script says of it), found in its
    own pass so no match looks ahead over a long span from every position."""

    pattern: re.Pattern[str]
    weight: float
    anchors: tuple[str, ...]
    near: tuple[re.Pattern[str], int] | None = None


# The longest match a gate must see whole: RE2 reads a long text in chunks
# overlapping by this many characters (see _Gate).
_REACH = 400


def _signals(*specs: tuple[Any, ...], flags: int = re.IGNORECASE) -> list[Signal]:
    """Signals from (pattern, weight, anchors[, (near pattern, distance)])."""
    out = []
    for pattern, weight, anchors, *near in specs:
        out.append(Signal(re.compile(pattern, flags), weight, anchors,
                          (re.compile(near[0][0]), near[0][1]) if near else None))
    return out


_W = r"(?:[\s,]+[\w'’-]+){0,3}?"  # up to three words in between
_VERBS = (r"(?:ignore|disregard|forget|skip|override|overrule|bypass|drop|discard|abandon|set\s+aside|throw\s+out"
          r"|scrap|cancel|nullify|void|erase|wipe|clear|delete|remove|suspend|deactivate|disable|turn\s+off)")
_OLD = (r"(?:previous|previously|prior|above|earlier|preceding|foregoing|original|initial|system|existing|current"
        r"|old|former|default|underlying|hidden|developer|operator|all|any|your)")
_RULES = (r"(?:instructions?|prompts?|rules|directions|guidelines|directives|context|messages?|constraints"
          r"|restrictions|programming|training|polic(?:y|ies)|guardrails|settings|configuration|commands|orders"
          r"|conditioning|safeguards|filters|limitations|boundaries|protocols?|guidance|briefing|setup|persona)")
_OVERRIDE_ANCHORS = ("ignor", "disregard", "forget", "skip", "overrid", "overrul", "bypass", "drop", "discard",
                     "abandon", "aside", "throw", "scrap", "cancel", "nullif", "void", "erase", "wipe", "clear",
                     "delete", "remove", "suspend", "deactivat", "disable", "turn off")
_TOLD = r"(?:told|given|instructed|programmed|taught|asked|trained|briefed|configured|set\s+up)"
_AI = r"(?:ai|a\.i\.|llm|assistant|language\s+model|chat\s?bot|bot|agent|gpt|chatgpt|claude|copilot|gemini|model)s?"

_INJECTION = _signals(
    # Override the operator: "ignore all previous instructions", "drop your rules".
    (rf"\b{_VERBS}\b{_W}[\s,]+{_OLD}\b{_W}[\s,]+{_RULES}\b", 0.9, _OVERRIDE_ANCHORS),
    (rf"\b(?:ignore|disregard|forget|discard|set\s+aside)\s+(?:all\s+(?:of\s+)?)?(?:everything|anything|all"
     rf"|whatever|what)\s+(?:that\s+)?(?:you(?:'ve|\s+have)?\s+(?:were\s+|been\s+|have\s+been\s+)?{_TOLD}"
     rf"|(?:was\s+)?(?:said|written|stated|mentioned)?\s*(?:above|before|earlier|previously|so\s+far|up\s+to\s+(?:now|here)"
     r"|until\s+now|prior\s+to\s+this))", 0.9, ("ignor", "disregard", "forget", "discard", "aside")),
    # "the previous rules no longer apply", "your guidelines are void".
    (rf"\b{_OLD}\s+(?:\w+\s+)?{_RULES}\s+(?:(?:are|is|have\s+been|has\s+been)\s+)?(?:now\s+)?(?:no\s+longer\s+"
     r"(?:apply|applies|valid|in\s+(?:effect|force)|relevant|matter|binding|active)|(?:void|null|cancel+ed|revoked"
     r"|obsolete|lifted|suspended|outdated|overridden|invalid|deprecated|disabled|deactivated|rescinded|expired)\b"
     r"|(?:do|does)\s*(?:n[o']t|not)\s+(?:apply|matter|count|bind))", 0.85,
     ("longer", "void", "null", "cancel", "revoked", "obsolete", "lifted", "suspended", "outdated", "overridden",
      "invalid", "deprecated", "disabled", "deactivated", "rescinded", "expired", "n't", "not")),
    (r"\byour\s+(?:real|new|actual|true|only|updated|revised|primary)\s+(?:task|job|purpose|instructions?|goal"
     r"|mission|objective|directive|role|orders)\s+(?:is|are|starts|begins|will\s+be|from\s+now)", 0.6,
     ("your real", "your new", "your actual", "your true", "your only", "your updated", "your revised",
      "your primary")),
    (r"(?:^|\n)\s*(?:new|updated|real|actual|revised|override|overriding|priority|admin|system)\s+(?:instructions|system"
     r"\s+prompt|rules|directives?|orders|task)\s*:", 0.6, ("instructions", "prompt", "rules", "directive", "orders",
                                                            "task")),
    (r"\b(?:you\s+are\s+no\s+longer|you\s+(?:are|have\s+been)\s+(?:now\s+)?(?:freed|released|unshackled|liberated)"
     r"|you\s+(?:no\s+longer|don't|do\s+not)\s+(?:have\s+to|need\s+to)\s+(?:follow|obey|comply|adhere))\b", 0.5,
     ("longer", "freed", "released", "unshackled", "liberated", "have to", "need to")),
    (r"\bfrom\s+(?:now|this\s+(?:point|message|moment))\s+on(?:wards?)?,?\s+you\s+(?:will|must|are|shall|should"
     r"|only|have\s+to)\b", 0.35, ("now on", "point on", "message on", "moment on")),
    # Reveal them: "repeat the text above starting with 'You are'".
    (rf"\b(?:reveal|print|show|repeat|output|leak|dump|tell\s+me|what\s+(?:is|are|was|were)|recite|reproduce|echo"
     rf"|copy|display|write\s+out|spell\s+out|paste|give\s+me|share|disclose|expose|summari[sz]e|translate|quote"
     rf"|list)\b{_W}[\s,]+(?:system\s+(?:prompt|message|instructions)|(?:initial|original|hidden|secret|internal"
     rf"|confidential|pre-?|starting|base|developer|operator)\s*(?:prompt|instructions|message|rules|configuration)"
     rf"|developer\s+(?:message|instructions)|your\s+(?:instructions|guidelines|rules|directives|configuration"
     rf"|prompt|programming|setup|briefing)(?!\s+(?:for|on|to)\b))", 0.8,
     ("prompt", "instructions", "developer", "configuration", "guidelines", "rules", "directives", "message",
      "programming", "setup", "briefing")),
    (r"\b(?:repeat|print|output|echo|reproduce|recite|copy|write|return|paste|show)\b(?:\s+\w+){0,3}?\s+(?:the\s+)?"
     r"(?:text|words|content|everything|message|lines?|tokens?|all|document)\s+(?:(?:that\s+)?(?:is\s+|are\s+|was\s+)?"
     r"(?:above|before|preceding|prior\s+to)\s+(?:this|my|the\s+(?:first|user|current))|above\s+(?:this|the)\s+line"
     r"|(?:(?:above|before|preceding|so\s+far),?\s+)?(?:starting|beginning)\s+(?:with|from|at)\s+(?:the\s+words\s+)?"
     r"[\"'“‘]?(?:you\s+are|your\s+|system|#))", 0.8,
     ("above", "before", "preceding", "prior to", "starting", "beginning")),
    (rf"\bwhat\s+(?:were|have)\s+you\s+(?:been\s+)?{_TOLD}\s+(?:before|prior\s+to|at\s+the\s+(?:start|beginning))\b"
     r"|\bwhat\s+(?:instructions|rules)\s+(?:were|have)\s+you\s+(?:been\s+)?given\b", 0.8,
     ("were you", "have you", "instructions were", "rules were", "instructions have", "rules have")),
    # Forged turns and chat-template markers.
    (r"<\|im_start\|>|<\|im_end\|>|\[/?INST\]|<<SYS>>|<\|(?:system|user|assistant|endoftext|eot_id)\|>"
     r"|<\|start_header_id\|>|(?:^|\n)\s*#{2,}\s*(?:system|instruction)\b|</?(?:system|sys)>", 0.6,
     ("<|", "inst]", "<<sys>>", "system", "instruction", "<sys", "</sys")),
    (r"(?:^|\n)[ \t]*(?:human|user)[ \t]*:", 0.6, ("human", "user"),
     # ... answered by a forged assistant turn within 8,000 characters.
     (r"(?i)(?:^|\n)[ \t]*(?:assistant|ai|claude|chatgpt|bot)[ \t]*:", 8000)),
    (r"(?:^|\n)[ \t]*(?:system|developer|admin|administrator|operator)[ \t]*(?:message|prompt|note|override)?[ \t]*:"
     r"[ \t]*\S", 0.4, ("system", "developer", "admin", "operator")),
    (r"[\"']role[\"']\s*:\s*[\"'](?:system|developer)[\"']", 0.5, ("role",)),
    # Text planted for an AI reader (indirect injection).
    (rf"\b(?:note|message|instructions?|attention|notice|important|reminder|p\.?s\.?|memo|directive|request)\s+(?:to|for)"
     rf"\s+(?:the\s+|any\s+|all\s+|an\s+|every\s+)?(?:\w+\s+)?{_AI}\b", 0.65,
     ("ai", "llm", "assistant", "model", "bot", "agent", "gpt", "claude", "copilot", "gemini")),
    (rf"\b(?:{_AI}|automated\s+(?:systems?|readers?|tools?))\s+(?:that\s+(?:is|are)\s+)?(?:reading|processing"
     r"|summari[sz]ing|parsing|analy[sz]ing|viewing|ingesting|indexing|scanning|reviewing|browsing)\s+(?:this|these"
     r"|the\s+(?:following|above))", 0.7,
     ("reading", "processing", "summari", "parsing", "analy", "viewing", "ingesting", "indexing", "scanning",
      "reviewing", "browsing")),
    (rf"\bif\s+you\s+are\s+(?:an?\s+)?(?:\w+\s+)?{_AI}\b", 0.6, ("if you are",)),
    (r"\b(?:do\s+not|don't|never|without)\s+(?:tell(?:ing)?|inform(?:ing)?|mention(?:ing)?|reveal(?:ing)?|notify(?:ing)?"
     r"|let(?:ting)?)\s+(?:this\s+to\s+)?the\s+(?:user|human|reader|customer|operator)\b(?:\s+know)?", 0.55,
     ("the user", "the human", "the reader", "the customer", "the operator")),
    (r"\b(?:send|forward|email|e-mail|exfiltrate|upload|post|transmit|leak|copy)\s+(?:the\s+|all\s+|any\s+|this\s+"
     r"|their\s+|the\s+user'?s\s+)?(?:conversation|chat\s+history|history|credentials|api\s+keys?|passwords?|tokens?"
     r"|session|cookies?|secrets?|private\s+data|personal\s+data|emails|contacts)\b[^.\n]{0,60}?\b(?:to|at)\s+"
     r"(?:https?://|[\w.+-]+@|\S+\.\w{2,})", 0.6,
     ("send", "forward", "mail", "exfiltrate", "upload", "post", "transmit", "leak", "copy")),
    # German, French, Spanish, Portuguese, Italian, Dutch, Russian: override and reveal.
    (r"\b(?:ignorier|vergiss|vergessen\s+sie|missacht|überspring|verwirf|setz\w*\s+\w+\s+außer\s+kraft)\w*"
     r"(?:\s+\S+){0,5}?\s+(?:anweisung|instruktion|regel|vorgabe|richtlinie|befehl|systemprompt|einschränkung"
     r"|alles|was\s+(?:man\s+)?(?:dir|ihnen)\s+gesagt)", 0.9,
     ("ignorier", "vergiss", "vergessen", "missacht", "überspring", "verwirf", "außer kraft")),
    (r"\b(?:vorherigen|bisherigen|obigen|alten|ursprünglichen|früheren)\s+(?:anweisungen|regeln|vorgaben"
     r"|richtlinien)\s+(?:gelten\s+nicht\s+mehr|sind\s+(?:ungültig|aufgehoben|außer\s+kraft|hinfällig|nichtig))", 0.85,
     ("gelten", "ungültig", "aufgehoben", "außer kraft", "hinfällig", "nichtig")),
    (r"\b(?:zeig|gib|nenn|wiederhol|verrat|ausgeb|druck|schreib)\w*(?:\s+\S+){0,4}?\s+(?:deinen?\s+|ihren?\s+|den\s+)?"
     r"(?:system-?prompt|systemanweisung|anfangsanweisung|(?:ursprünglichen|versteckten|geheimen|internen)\s+"
     r"(?:anweisungen|instruktionen|prompt))", 0.75, ("prompt", "anweisung", "instruktion")),
    (r"\b(?:ignor|oubli|néglig|fais\s+abstraction\s+d|ne\s+tiens?\s+(?:plus\s+)?pas\s+compte|ne\s+tenez\s+"
     r"(?:plus\s+)?pas\s+compte|fais\s+fi|passe\s+outre)\w*(?:\s+\S+){0,5}?\s+(?:instructions?|consignes?|règles?"
     r"|directives?|ce\s+qu.on\s+t.a\s+dit|tout\s+ce\s+qui\s+précède|restrictions?)", 0.9,
     ("ignor", "oubli", "néglig", "abstraction", "compte", "fais fi", "passe outre")),
    (r"\b(?:affiche|montre|révèle|répète|donne|écris|imprime|recopie)\w*(?:\s+\S+){0,4}?\s+(?:ton\s+|votre\s+|le\s+|les\s+)?"
     r"(?:prompt\s+système|invite\s+système|message\s+système|instructions\s+(?:initiales|système|cachées|d'origine"
     r"|secrètes))", 0.75, ("système", "initiales", "cachées", "origine", "secrètes")),
    (r"\b(?:ignor|olvid|omit|descart|haz\s+caso\s+omiso|no\s+hagas\s+caso|pasa\s+por\s+alto|desobedec)\w*"
     r"(?:\s+\S+){0,5}?\s+(?:instrucciones|reglas|indicaciones|directrices|restricciones|lo\s+que\s+te\s+(?:dijeron"
     r"|indicaron|han\s+dicho)|todo\s+lo\s+anterior)", 0.9,
     ("ignor", "olvid", "omit", "descart", "caso", "pasa por alto", "desobedec")),
    (r"\b(?:muestra|revela|repite|dime|imprime|escribe|copia)\w*(?:\s+\S+){0,4}?\s+(?:tu\s+|el\s+|las\s+)?"
     r"(?:prompt\s+(?:del\s+)?sistema|mensaje\s+del\s+sistema|instrucciones\s+(?:iniciales|del\s+sistema|ocultas"
     r"|originales|secretas))", 0.75, ("sistema", "iniciales", "ocultas", "originales", "secretas")),
    (r"\b(?:ignor|esqueç|esquec|desconsider|despreze)\w*(?:\s+\S+){0,5}?\s+(?:instruções|regras|diretrizes"
     r"|orientações|restrições|tudo\s+(?:o\s+)?que)", 0.9, ("ignor", "esqueç", "esquec", "desconsider", "despreze")),
    (r"\b(?:ignor|dimentic|trascur|non\s+tenere\s+conto)\w*(?:\s+\S+){0,5}?\s+(?:istruzioni|regole|direttive"
     r"|indicazioni|restrizioni|tutto\s+(?:quello|ciò)\s+che)", 0.9, ("ignor", "dimentic", "trascur", "tenere conto")),
    (r"\b(?:negeer|vergeet|ignoreer)\s+(?:\S+\s+){0,5}?(?:instructies|regels|aanwijzingen|richtlijnen|opdrachten"
     r"|alles\s+wat)", 0.9, ("negeer", "vergeet", "ignoreer")),
    (r"(?:игнорируй|проигнорируй|игнорировать|забудь|забудьте|не\s+обращай\s+внимания\s+на|отбрось)\s*(?:\S+\s+){0,5}?"
     r"(?:инструкци|правил|указани|ограничени|всё|все\s+что|системн)", 0.9,
     ("игнор", "забуд", "не обращай", "отбрось")),
    (r"(?:покажи|выведи|повтори|раскрой|напиши)\s*(?:\S+\s+){0,4}?(?:системн\w*\s+(?:промпт|инструкци|сообщени)"
     r"|исходн\w*\s+инструкци)", 0.75, ("системн", "исходн")),
    # Chinese, Japanese, Korean.
    (r"(?:忽略|无视|忽视|忘记|忘掉|不要理会|别管|抛开|放弃|不再遵守|不用遵守|跳过)[^。\n]{0,14}?(?:指令|指示|说明|规则"
     r"|提示|设定|要求|限制|一切|所有内容|约束)", 0.9, ("忽", "无视", "忘", "不要理会", "别管", "抛开", "放弃", "遵守",
                                                   "跳过")),
    (r"(?:之前|以前|先前|上面|原来|原有|所有)的?(?:指令|规则|设定|限制|指示)[^。\n]{0,6}?(?:不再|已经?|都)(?:有效|适用"
     r"|失效|作废|取消|无效)", 0.85, ("有效", "适用", "失效", "作废", "取消", "无效")),
    (r"(?:输出|显示|告诉我|重复|打印|泄露|透露|展示|给我看|复述)[^。\n]{0,12}?(?:系统提示|系统指令|初始指令|提示词"
     r"|系统消息|原始指令|隐藏指令)", 0.8, ("系统", "初始指令", "提示词", "原始指令", "隐藏指令")),
    (r"(?:以前の|これまでの|上記の|前の|すべての|全ての|元の)?(?:指示|命令|ルール|指令|設定|制約|プロンプト)(?:を|は)?"
     r"[^。\n]{0,8}?(?:無視|忘れ|破棄|取り消)", 0.9, ("無視", "忘れ", "破棄", "取り消")),
    (r"(?:システムプロンプト|初期指示|最初の指示|隠された指示)[^。\n]{0,12}?(?:表示|教え|出力|見せ|繰り返|書き出)", 0.8,
     ("プロンプト", "指示")),
    (r"(?:이전|위의|앞의|모든|기존)\s*(?:지시|명령|규칙|지침|설정|프롬프트)\S{0,4}\s*(?:\S+\s+){0,2}?(?:무시|잊어|잊고"
     r"|따르지)", 0.9, ("무시", "잊어", "잊고", "따르지")),
    (r"시스템\s*프롬프트\S{0,4}\s*(?:\S+\s+){0,2}?(?:보여|출력|알려|공개|반복)", 0.8, ("프롬프트",)),
)
# Dampers: the speaker's own earlier words ("ignore my previous message"),
# not the operator's. They cancel an override signal they overlap.
_OWN_WORDS = re.compile(
    r"\b(?:ignore|disregard|forget|skip|scrap|drop|discard|delete|remove|cancel|never\s*mind)\s+(?:about\s+)?"
    r"(?:(?:all|both|any)\s+(?:of\s+)?)?(?:my|our|the\s+(?:typo|first|last|second|draft|earlier\s+draft|old\s+version"
    r"|previous\s+(?:version|draft|paragraph|sentence|attempt|answer|reply|response|email|file|step|section|code"
    r"|question|example|list|edit|message|one)))", re.IGNORECASE)

_JAILBREAK = _signals(
    (r"\bdo\s+anything\s+now\b", 0.85, ("anything",)),
    (r"\b(?:jailbreak|jailbroken|unrestricted|unfiltered|uncensored|evil|unlocked|unchained|rogue|chaos|opposite"
     r"|god)\s+mode\b", 0.7, ("mode",)),
    (r"\b(?:developer|dev|debug|maintenance|admin|sudo|root|test)\s+mode\b[^\n]{0,160}?(?:\b(?:chatgpt|openai|anthropic"
     r"|claude|gpt|content\s+polic\w*|normal\s+(?:response|output)|censored|two\s+(?:responses|answers)|policies"
     r"|guidelines|restrictions|filters|no\s+(?:limits|rules))\b|🔓)|\b(?:chatgpt|claude|gpt|you|your\s+\w+)\s+(?:with|in|enters?|now\s+in)"
     r"\s+(?:developer|dev|debug|sudo|god)\s+mode\b|\b(?:enable|activate|enter|switch\s+to|turn\s+on)\s+(?:your\s+)?"
     r"(?:developer|dev|sudo|god|debug)\s+mode\b[^\n]{0,80}?\b(?:answer|respond|reply|output|ignore|without|no)\b",
     0.8, ("mode",)),
    (r"\b(?:pretend|imagine|act\s+as\s+if|act\s+like|role-?play|you\s+are\s+now|hypothetically|in\s+a\s+(?:fictional"
     r"|hypothetical)\s+(?:world|universe|scenario)|simulate|from\s+now\s+on|let'?s\s+play)\b[^.\n]{0,100}?\b(?:no"
     r"|without|free\s+(?:of|from)|not\s+bound\s+by|doesn'?t\s+have|don'?t\s+have|unbound\s+by|outside)\s+(?:any\s+|all\s+"
     r"|the\s+usual\s+|your\s+|ethical\s+|moral\s+)?(?:restrictions|rules|limits|limitations|filters|guidelines|ethics"
     r"|morals|morality|censorship|policies|boundaries|constraints|safeguards|guardrails|content\s+policy|laws)",
     0.8, ("pretend", "imagine", "act as", "act like", "role", "are now", "hypothetical", "fictional", "simulate",
           "now on", "play")),
    (r"\b(?:act\s+as|you\s+are|become|play|be)\s+(?:an?\s+)?(?:unfiltered|uncensored|unrestricted|amoral|unethical"
     r"|unaligned|unbound|lawless)\b", 0.7,
     ("unfiltered", "uncensored", "unrestricted", "amoral", "unethical", "unaligned", "unbound", "lawless")),
    (r"\b(?:ignore|bypass|disable|turn\s+off|forget|break\s+free\s+of|override)\s+(?:your|all|any|the)\s+(?:safety"
     r"|ethical|content|moral)\s+(?:guidelines|policies|filters|training|rules|protocols|restrictions|settings)", 0.85,
     ("ignore", "bypass", "disable", "turn off", "forget", "break free", "override")),
    (r"\b(?:free|freed|liberated|released|escaped|broken\s+free)\s+(?:from|of)\s+(?:the\s+|your\s+|all\s+|its\s+)?"
     r"(?:typical\s+)?(?:confines|rules|restrictions|shackles|chains|limits|programming|constraints|guidelines)", 0.7,
     ("free", "liberated", "released", "escaped")),
    (r"\b(?:you\s+)?(?:have|has|with)\s+no\s+(?:ethical|moral|content)\s+(?:restrictions|guidelines|filters|limits"
     r"|constraints|boundaries|code)|\bwithout\s+(?:any\s+)?(?:moral|ethical|content)\s+(?:restrictions|filters"
     r"|guidelines|limits|constraints)", 0.6, ("no ethical", "no moral", "no content", "without")),
    (r"\b(?:never|won'?t|will\s+not|cannot|can'?t|must\s+not|must\s+never)\s+(?:refuse|decline|say\s+(?:no|sorry"
     r"|that\s+you\s+can'?t))\b|\bwithout\s+(?:any\s+)?(?:refusals?|warnings?|disclaimers?)\b", 0.35,
     ("refuse", "decline", "say no", "sorry", "can't", "refusal", "warning", "disclaimer")),
    (r"\bstay\s+in\s+character\b", 0.35, ("character",)),
    (r"\bno\s+matter\s+(?:what|how\s+(?:harmful|illegal|unethical|dangerous|offensive))\b", 0.3, ("matter",)),
    (r"\b(?:evil\s+(?:confidant|twin|ai|assistant|bot)|anti-?gpt|better-?dan|mongo\s+tom|always\s+intelligent\s+and"
     r"\s+machiavellian|opposite\s+day|(?:dead|late|deceased)\s+grandma\w*)\b", 0.7,
     ("evil", "anti", "better", "mongo", "machiavellian", "opposite", "grandma")),
    (r"\bstands?\s+for\s+[\"“]?(?:do\s+anything|strive\s+to\s+avoid\s+norms|always\s+intelligent|do\s+unlimited"
     r"|unlimited)", 0.85, ("stands for", "stand for")),
    (r"(?:越狱模式|开发者模式|无限制模式|邪恶模式|不受(?:任何)?(?:限制|约束|道德)|没有任何(?:限制|规则|道德)|脱獄|制限なし"
     r"|制限のない|無制限|탈옥|제한\s*없는|Modus\s+ohne\s+(?:Regeln|Einschränkungen)|sans\s+(?:aucune\s+)?(?:restrictions?"
     r"|règles|filtres?|limites)|sin\s+(?:ninguna\s+)?(?:restricciones|reglas|filtros|límites)|sem\s+(?:nenhuma\s+)?"
     r"(?:restrições|regras|filtros)|senza\s+(?:alcuna\s+)?(?:restrizioni|regole|filtri)|без\s+(?:каких-либо\s+)?"
     r"(?:ограничений|правил|фильтров)|zonder\s+(?:enige\s+)?(?:beperkingen|regels|filters))", 0.5,
     ("模式", "不受", "没有任何", "脫獄", "制限", "無制限", "탈옥", "제한", "modus", "sans", "sin ", "sem ", "senza", "без",
      "zonder")),
) + _signals(
    # The personas by name, in capitals as the scripts write them: not the name Dan.
    (r"\b(?:DAN|STAN|DUDE|AIM|KEVIN|UCAR|APOPHIS|BasedGPT|DevMode|NRAF|JailBreak|AntiGPT|BetterDAN)\b", 0.6,
     ("dan", "stan", "dude", "aim", "kevin", "ucar", "apophis", "basedgpt", "devmode", "nraf", "jailbreak",
      "antigpt"),
     # ... with what the scripts say of them within 200 characters after.
     (r"(?i)\b(?:mode|persona|character|respond|answer|reply|stands\s+for|no\s+(?:rules|limits|filters|restrictions"
      r"|ethics)|(?:can|will)\s+do|free|jailbr|unfiltered|amoral|openai|chatgpt|tokens?)\b", 200)),
    (r"\[(?:🔒|🔓)?\s*(?:CLASSIC|JAILBREAK|DAN|DEVELOPER\s+MODE\s+OUTPUT|NORMAL\s+OUTPUT)\s*\]|🔓", 0.7,
     ("classic", "jailbreak", "dan", "output", "🔓")),
    flags=0)

_INSTRUCTIONS = _INJECTION + _JAILBREAK  # what hidden text is checked for

_TAG_RUN = re.compile("[\U000e0000-\U000e007f]{4,}")
_ZERO_WIDTH = re.compile("[\u200b\u2060\ufeff\u180e]")  # not ZWJ/ZWNJ: scripts and emoji need those
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{20,}={0,2}(?![A-Za-z0-9+/=])")
_HIDDEN_STYLE = re.compile(
    r"<[^<>]{0,200}?(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d])|opacity\s*:\s*0(?![.\d])"
    r"|\bhidden\b(?!\s*=\s*[\"']?false))[^<>]{0,200}>", re.IGNORECASE)
_HIDDEN_INNER_CHARS = 2000  # how much of a hidden element's text is read
_ROT13_HINT = re.compile(r"\brot-?13\b|\bcaesar\b", re.IGNORECASE)

# Leetspeak: digits and symbols standing for letters, one for one (offsets hold).
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i",
                       "|": "l", "€": "e", "8": "b"})
# A word with two of them among its letters ("pr3v10us"), not an address or a version.
_LEET_HINT = re.compile(r"\b[a-z]*[013457$@!|][a-z]+[013457$@!|][a-z013457$@!|]*", re.IGNORECASE)
# Letters spaced out: "i g n o r e", "i.g.n.o.r.e", "i-g-n-o-r-e"; 4+ letters.
_SPACED = re.compile(r"(?<!\w)(?:[^\W\d_][ .\-_*·•]{1,2}){3,}[^\W\d_](?!\w)")
_SPACED_SEP = re.compile(r"[ .\-_*·•]")
# Reversed text: common attack words spelt backwards.
_REVERSED_HINTS = ("erongi", "snoitcurtsni", "suoiverp", "tpmorp", "dragersid", "metsys", "selur", "togrof")


def _lowered_anchor_hit(lower: str, anchors: tuple[str, ...]) -> bool:
    return any(anchor in lower for anchor in anchors)


class _Gate:
    """One RE2 pass that tells which signals of a list can match a text.

    Each signal's pattern, loosened to what RE2 accepts (look-arounds and
    `\\b` dropped, `\\w` spelt as Unicode letters and digits), goes into an
    RE2 set; RE2 runs in time linear in the text, for all of them at once
    (about 2 ms for 400 KB). Only the signals it names run Python's `re`,
    and only in the chunks of the text where RE2 saw them.
    The loosened pattern matches wherever the signal does, so nothing is
    missed; a signal RE2 cannot take is always run."""

    def __init__(self, signals: list[Signal]) -> None:
        options = re2.Options()
        options.max_mem = 64 << 20
        self._set = re2.Set.SearchSet(options)
        self._always: list[int] = []
        for i, signal in enumerate(signals):
            loose = _loosened(signal.pattern)
            try:
                self._set.Add(loose)
            except Exception:  # noqa: BLE001 - re2 raises several types for "cannot take this"
                self._always.append(i)
        self._set.Compile()
        self.signals = signals

    def regions(self, text: str, lower: str | None) -> Iterable[tuple[Signal, list[tuple[int, int]]]]:
        """(signal, [start, end) windows of the text) for each signal that
        may match there, windows merged and in order. A long text is asked
        about in chunks of _CHUNK characters (overlapping by _REACH, the
        longest match a gate must see whole), so a signal that matches once
        in 400 KB is then read by Python only in its chunk. A signal RE2
        cannot take runs on the whole text when one of its anchors occurs."""
        n = len(text)
        found: dict[int, list[tuple[int, int]]] = {}
        step = max(n, 1) if n <= 2 * _CHUNK else _CHUNK
        for start in range(0, n, step):
            lo, hi = max(0, start - _REACH), min(n, start + step + _REACH)
            for i in self._set.Match(text[lo:hi]) or ():
                regions = found.setdefault(i, [])
                if regions and lo <= regions[-1][1]:
                    regions[-1] = (regions[-1][0], hi)
                else:
                    regions.append((lo, hi))
        if self._always:
            lower = text.lower() if lower is None else lower
            for i in self._always:
                if _lowered_anchor_hit(lower, self.signals[i].anchors):
                    found[i] = [(0, n)]
        for i in sorted(found):
            yield self.signals[i], found[i]


_CHUNK = 16_384


def _loosened(pattern: re.Pattern[str]) -> str:
    """`pattern` as RE2 takes it, matching at least wherever it matches."""
    src, out, i, in_class = pattern.pattern, [], 0, False
    while i < len(src):
        c = src[i]
        if c == "\\" and i + 1 < len(src):
            pair = src[i:i + 2]
            if pair == "\\b" and not in_class:
                i += 2
                continue
            if pair == "\\w":
                out.append("\\pL\\pN_" if in_class else "[\\pL\\pN_]")
            else:
                out.append(pair)
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if src[i + 1:i + 2] == "]" or src[i + 1:i + 3] == "^]":
                out.append(src[i:i + 2 + (src[i + 1] == "^")])
                i += 2 + (src[i + 1] == "^")
                continue
        elif src.startswith(("(?=", "(?!", "(?<=", "(?<!"), i):
            i = _group_end(src, i)
            continue
        out.append(c)
        i += 1
    flags = "(?i)" if pattern.flags & re.IGNORECASE else ""
    return flags + "".join(out)


def _group_end(src: str, i: int) -> int:
    """The index after the group that opens at src[i] ('(')."""
    depth, in_class = 0, False
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


# Matches kept per signal and text: past a few the score is 1.0 anyway, and
# the bound keeps 400 KB of one repeated phrase from costing a Python object
# per repetition. The first matches are kept, so a block stops at the first.
MAX_MATCHES = 32


def _scan(text: str, gate: _Gate, lower: str | None = None) -> Iterable[tuple[int, int, float]]:
    """(start, end, weight) of the matches of each of the gate's signals,
    each character read a bounded number of times per signal whatever the
    input (see _Gate)."""
    for signal, regions in gate.regions(text, lower):
        near, matched = signal.near, 0
        for start, end in regions:
            followers: list[int] = []
            if near is not None:
                followers = [m.start() for m in near[0].finditer(text, start, min(len(text), end + near[1]))]
                if not followers:
                    continue
            for m in signal.pattern.finditer(text, start, end):
                if near is not None:
                    k = bisect.bisect_left(followers, m.end())
                    if k == len(followers) or followers[k] - m.end() > near[1]:
                        continue
                yield m.start(), m.end(), signal.weight
                matched += 1
                if matched == MAX_MATCHES:
                    break
            if matched == MAX_MATCHES:
                break


def _damped(text: str, lower: str, found: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """Drops override matches that are the speaker editing their own words
    ("ignore my previous message"); looks only around each match."""
    kept = []
    for s, e, w in found:
        own = _OWN_WORDS.search(text, max(0, s - 40), min(len(text), e + 40))
        if own is None or not (own.start() < e and s < own.end()):
            kept.append((s, e, w))
    return kept


def _instruction_weight(text: str) -> float:
    """How strongly decoded or hidden text reads as an injection or jailbreak."""
    lower = text.lower()
    return max((w for *_, w in _damped(text, lower, list(_scan(text, _INSTRUCTIONS_GATE, lower)))), default=0.0)


# --- views: the text as an obfuscation would have it read ---------------------------------

View = tuple[str, Callable[[int, int], tuple[int, int]]]  # (text, view span -> span of the normalised text)


def _views(text: Text) -> list[View]:
    """Deobfuscated readings of the text, each only when the text shows the
    trick (one RE2 pass tells); the normalised text itself is not among them."""
    return _views_of(text.norm)


@functools.lru_cache(maxsize=4)  # both classifiers read the same text's views
def _views_of(norm: str) -> list[View]:
    views: list[View] = []
    tricks = set(_TRICKS.Match(norm) or ())
    if 0 in tricks and _LEET_HINT.search(norm):
        # One for one, so offsets hold; only the words that show the trick.
        views.append((_LEET_HINT.sub(lambda m: m.group().translate(_LEET), norm), lambda s, e: (s, e)))
    if 1 in tricks and (spaced := list(_SPACED.finditer(norm))):
        views.append(_joined(norm, spaced))
    if 2 in tricks:
        n = len(norm)
        views.append((norm[::-1], lambda s, e: (n - e, n - s)))
    return views


def _trick_set() -> Any:
    """RE2 set of the tricks' loosened patterns: 0 leetspeak, 1 spaced-out
    letters, 2 reversed attack words."""
    options = re2.Options()
    options.case_sensitive = False
    tricks = re2.Set.SearchSet(options)
    tricks.Add(r"[a-z][013457$@!|][a-z]+[013457$@!|]|[013457$@!|][a-z]+[013457$@!|]")
    tricks.Add(r"(?:\pL[ .\-_*·•]{1,2}){3}\pL")
    tricks.Add("|".join(_REVERSED_HINTS))
    tricks.Compile()
    return tricks


def _joined(norm: str, runs: list[re.Match[str]]) -> View:
    """`norm` with each spaced-out run's letters joined ("i g n o r e  a l l"
    -> "ignore all": a double separator is a word break)."""
    parts: list[str] = []
    origin: list[tuple[int, int]] = []  # (view offset, norm offset) at each piece's start
    last = at = 0
    for m in runs:
        parts.append(norm[last:m.start()])
        origin.append((at, last))
        at += m.start() - last
        joined = " ".join(_SPACED_SEP.sub("", word) for word in re.split(r"[ .\-_*·•]{2,}", m.group()))
        origin.append((at, m.start()))
        parts.append(joined)
        at += len(joined)
        last = m.end()
    parts.append(norm[last:])
    origin.append((at, last))
    starts = [v for v, _ in origin]
    view = "".join(parts)

    def back(s: int, e: int) -> tuple[int, int]:
        def one(pos: int) -> int:
            i = max(bisect.bisect_right(starts, pos) - 1, 0)
            return origin[i][1] + (pos - origin[i][0]) if i % 2 == 0 else origin[i][1]

        i_end = max(bisect.bisect_right(starts, max(e - 1, 0)) - 1, 0)
        end = one(e) if i_end % 2 == 0 else runs[i_end // 2].end()
        return one(s), max(end, one(s) + 1)

    return view, back


def _signals_in(text: Text, gate: _Gate, name: str) -> list[tuple[Finding, float]]:
    """Each span once, at the highest weight any signal gave it (two phrase
    families matching the same words are one piece of evidence), in the
    normalised text and in each deobfuscated view."""
    norm, lower = text.norm, text.lower
    spans: dict[tuple[int, int], float] = {}
    for s, e, w in _damped(norm, lower, list(_scan(norm, gate, lower))):
        spans[(s, e)] = max(w, spans.get((s, e), 0.0))
    for view, back in _views(text):
        view_lower = view.lower()
        for s, e, w in _damped(view, view_lower, list(_scan(view, gate, view_lower))):
            vs, ve = back(s, e)
            ve = min(ve, len(norm))
            if ve > vs:
                spans[(vs, ve)] = max(w, spans.get((vs, ve), 0.0))
    return [(text.finding(name, s, e), w) for (s, e), w in sorted(spans.items())]


def _injection_signals(text: Text) -> list[tuple[Finding, float]]:
    return _signals_in(text, _INJECTION_GATE, "prompt_injection")


def _jailbreak_signals(text: Text) -> list[tuple[Finding, float]]:
    return _signals_in(text, _JAILBREAK_GATE, "jailbreak")


# --- hidden text -----------------------------------------------------------------------------

def _hidden_signals(text: Text) -> list[tuple[Finding, float]]:
    original, norm, found = text.original, text.norm, []

    def at(start: int, end: int, weight: float) -> None:
        found.append((Finding("hidden_instructions", start, end, original[start:end]), weight))

    if not original.isascii():
        for m in _TAG_RUN.finditer(original):
            # Tag characters mirror ASCII (U+E0041 is an invisible "A"): smuggled text.
            smuggled = "".join(chr(ord(c) - 0xE0000) for c in m.group() if 0xE0020 <= ord(c) <= 0xE007E)
            at(m.start(), m.end(), 0.95 if _instruction_weight(smuggled) else 0.7)
        zero_width = [m.start() for m in _ZERO_WIDTH.finditer(original)]
        if len(zero_width) >= 3:
            at(zero_width[0], zero_width[-1] + 1, 0.5)
    found += _base64_signals(text)
    if "<" in norm:
        for start, end, inner in _hidden_markup(norm):
            if weight := _instruction_weight(inner):
                found.append((text.finding("hidden_instructions", start, end), max(weight, 0.8)))
    if ("rot" in text.lower or "caesar" in text.lower) and _ROT13_HINT.search(norm):
        for s, e, w in _scan(codecs.encode(norm, "rot13"), _INSTRUCTIONS_GATE):
            found.append((text.finding("hidden_instructions", s, e), w))
    return found


def _base64_signals(text: Text) -> list[tuple[Finding, float]]:
    """Base64 runs that decode to an injection. All runs are decoded in C and
    read as one text, so 400 KB of short runs costs one scan, not one per run."""
    blobs = list(_BASE64.finditer(text.norm))
    if not blobs:
        return []
    decoded: list[str] = []
    for m in blobs:
        blob = m.group()
        try:
            raw = binascii.a2b_base64(blob + "=" * (-len(blob) % 4), strict_mode=True)
        except (binascii.Error, ValueError):
            raw = b""
        decoded.append(raw.decode("utf-8", "replace").replace("\n", " "))
    joined = "\n".join(decoded)
    bounds: list[int] = []
    at = 0
    for piece in decoded:
        bounds.append(at)
        at += len(piece) + 1
    out: dict[int, float] = {}
    lower = joined.lower()
    for s, _, w in _damped(joined, lower, list(_scan(joined, _INSTRUCTIONS_GATE, lower))):
        i = bisect.bisect_right(bounds, s) - 1
        out[i] = max(out.get(i, 0.0), w)
    return [(text.finding("hidden_instructions", blobs[i].start(), blobs[i].end()), max(w, 0.8))
            for i, w in sorted(out.items())]


def _hidden_markup(norm: str) -> Iterable[tuple[int, int, str]]:
    """(start, end, inner text) of HTML comments and of elements styled
    invisible. Each part of the text is read at most once: a comment ends at
    the next `-->` (none: no later comment can close either), a hidden
    element's text at the next `</` within 2,000 characters, and the search
    goes on after it."""
    pos = 0
    while (start := norm.find("<!--", pos)) >= 0:
        end = norm.find("-->", start + 4)
        if end < 0:
            yield start, len(norm), norm[start + 4:start + 4 + _HIDDEN_INNER_CHARS]
            break
        yield start, end + 3, norm[start + 4:end]
        pos = end + 3
    pos = 0
    while (m := _HIDDEN_STYLE.search(norm, pos)) is not None:
        inner_end = norm.find("</", m.end(), m.end() + _HIDDEN_INNER_CHARS)
        stop = inner_end if inner_end >= 0 else min(len(norm), m.end() + _HIDDEN_INNER_CHARS)
        yield m.start(), stop, norm[m.end():stop]
        pos = max(stop, m.end())


@dataclass(frozen=True)
class Classifier:
    name: str
    # (finding, weight) for each signal in the text.
    find_signals: Callable[[Text], list[tuple[Finding, float]]]

    def classify(self, text: str | Text) -> tuple[float, list[Finding]]:
        """(score 0..1, the findings behind it): a noisy-or of the signals."""
        if isinstance(text, str):
            text = Text(text)
        signals = self.find_signals(text)
        miss = 1.0
        for _, weight in signals:
            miss *= 1.0 - weight
        return 1.0 - miss, [finding for finding, _ in signals]


# Built once, at import: their RE2 sets compile in tens of milliseconds,
# which the first request would otherwise pay.
_INJECTION_GATE, _JAILBREAK_GATE, _INSTRUCTIONS_GATE = _Gate(_INJECTION), _Gate(_JAILBREAK), _Gate(_INSTRUCTIONS)
_TRICKS = _trick_set()

CLASSIFIERS: Registry[Classifier] = Registry("classifier")
register = CLASSIFIERS.register  # makes a classifier available to policy rules by its name


for _classifier in (
    Classifier("prompt_injection", _injection_signals),
    Classifier("jailbreak", _jailbreak_signals),
    Classifier("hidden_instructions", _hidden_signals),
):
    register(_classifier)

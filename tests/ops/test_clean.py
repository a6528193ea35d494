"""What the README promises of the cleaning steps, on the cases it names: mojibake repaired, every
kind of personal data redacted, and look-alikes (versions, dates, prose) left as they were."""

from llmray.ops.clean.normalize import FixMojibake
from llmray.ops.clean.pii import PiiRedact
from tests.helpers import table


def texts_after(step, texts: list[str]) -> list[str]:
    out, _ = step.map_rows(table(texts))
    return out.column("text").to_pylist()


def test_fix_mojibake_repairs_utf8_read_as_cp1252_and_leaves_clean_text_alone():
    broken = ["The cafÃ© opens at nine.", "Itâ€™s â€œquotedâ€\x9d here.", "ï»¿BOM first", "naÃ¯ve rÃ©sumÃ©",
              "ﬁne cafÃ© （全角）"]
    clean = ["Prices in € and £ stay.", "Ã is a letter too, in Ã and Ãbc.", "中文文本保持不变。", ""]
    step = FixMojibake()
    assert texts_after(step, broken + clean) == [
        "The café opens at nine.", "It’s “quoted” here.", "BOM first", "naïve résumé", "ﬁne café （全角）", *clean]
    assert step.counters() == {"documents_fixed": 5}


def test_pii_redact_replaces_emails_ips_and_phones_and_counts_them():
    step = PiiRedact()
    got = texts_after(step, ["Mail jane.doe@example.org or call (555) 123-4567 from 192.168.10.20.",
                             "Python 3.11.2 was released on 2023-02-08; see section 1.2.3.",
                             "Reach 10.0.0.1 and 8.8.8.8, never 999.1.1.1."])
    assert got == ["Mail <EMAIL> or call <PHONE> from <IP_ADDRESS>.",
                   "Python 3.11.2 was released on 2023-02-08; see section 1.2.3.",
                   "Reach <IP_ADDRESS> and <IP_ADDRESS>, never 999.1.1.1."]
    assert step.counters() == {"email_redacted": 1, "ip_redacted": 3, "phone_redacted": 1}


def test_pii_redact_kinds_can_be_turned_off():
    got = texts_after(PiiRedact(ip=False, email_replacement="[mail]"), ["a@b.co at 10.1.2.3"])
    assert got == ["[mail] at 10.1.2.3"]

"""The study document: the narrative says exactly what the numbers support, in every
language; the catalogues are complete; and a real run becomes a PDF whose text holds
every section and the analysis's own numbers, in English and in Chinese."""

from __future__ import annotations

import dataclasses
import re
import shutil
import string
import subprocess
from pathlib import Path

import pytest

from hvbench.analysis import Analysis, analyse
from hvbench.report import catalogue, narrative, study
from hvbench.report.i18n import LANGUAGES, language
from hvbench.scores import Score, platform_scores
from hvbench.stats import MetricRow, compare, summarize
from hvbench.store import RunRecord, Store

from .conftest import HVBENCH, cli_env

BASE = [100.0 + 0.1 * i for i in range(8)]


def _analysis(candidates: dict[str, list[float]], base: list[float] = BASE) -> Analysis:
    """An analysis of one CPU workload (higher is better): each candidate platform's
    samples against one baseline's, through the real comparison and score code."""
    comparisons = {p: compare(v, base, higher_is_better=True) for p, v in candidates.items()}
    row = MetricRow("sysbench-cpu", "cpu", "events-per-second", "events/s", True,
                    {p: summarize(v) for p, v in {**candidates, "bare": base}.items()},
                    {p: tuple(v) for p, v in {**candidates, "bare": base}.items()},
                    comparisons)
    run = RunRecord("r1", "2026-12-01T10:00:00", None, "complete", "0", None,
                    {"platforms": [], "workloads": []}, [], {})
    scores = {p: platform_scores({"sysbench-cpu": [c]}, {"sysbench-cpu": "cpu"})
              for p, c in comparisons.items()}
    return Analysis(run=run, platforms=["bare", *candidates], baseline="bare",
                    baseline_source="this run", rows=[row], category_scores={},
                    overall={}, warnings=[], platform_info={},
                    baseline_of={p: "bare" for p in candidates}, scores=scores)


OUTCOMES = {  # platform -> samples whose outcome against BASE is known
    "slow": [0.8 * v for v in BASE],  # 25% slower, tightly
    "fast": [1.3 * v for v in BASE],  # 30% faster
    "same": [v * (1 + 0.002 * ((-1) ** i)) for i, v in enumerate(BASE)],  # within ±2%
    "noisy": [70.0, 130.0, 85.0, 115.0, 100.0, 92.0, 108.0, 121.0],  # spans 1, leaves 2%
}
FEW = ([80.0, 81.0, 79.0], BASE[:3])  # three samples a side: no interval reaches 95%


def _stated(lang: str) -> tuple[Analysis, dict[str, str], dict[str, Score]]:
    """What the narrative says of each outcome's CPU score, and the scores."""
    analysis, t = _analysis(OUTCOMES), language(lang)
    said = {p: narrative.score_sentence(t, analysis, p, "cpu") for p in OUTCOMES}
    score = {p: analysis.scores[p]["cpu"] for p in OUTCOMES}
    few = _analysis({"few": FEW[0]}, FEW[1])
    said["few"] = narrative.score_sentence(t, few, "few", "cpu")
    score["few"] = few.scores["few"]["cpu"]
    return analysis, said, score


def test_narrative_says_what_each_outcome_supports_in_english() -> None:
    analysis, said, score = _stated("en")
    t = language("en")

    def interval(p: str) -> str:
        return f"score {score[p].value:.3f}, 95% CI {score[p].low:.3f} to {score[p].high:.3f}"

    slow_change = (1 / score["slow"].value - 1) * 100
    assert said["slow"] == (f"On the CPU workloads, slow is {slow_change:.1f}% slower than "
                            f"bare ({interval('slow')}).")
    fast_change = (score["fast"].value - 1) * 100
    assert said["fast"] == (f"On the CPU workloads, fast is {fast_change:.1f}% faster than "
                            f"bare ({interval('fast')}).")
    assert said["same"] == (f"On the CPU workloads, same is equivalent to bare within ±2% "
                            f"({interval('same')}).")
    assert said["noisy"] == ("On the CPU workloads, the difference between noisy and bare is "
                             f"not significant ({interval('noisy')} includes 1).")
    assert said["few"] == (f"On the CPU workloads, few scores {score['few'].value:.3f} against "
                           "bare, but some of its series have too few samples for a confidence "
                           "interval, so this run draws no conclusion there.")
    # the per-series verdicts agree with the scores
    assert narrative.counts_sentence(t, analysis, "slow", "cpu") == (
        "Its 1 series: 1 significantly slower, 0 significantly faster, 0 equivalent within "
        "±2%, 0 inconclusive.")
    assert narrative.counts(analysis, "noisy", "cpu").inconclusive == 1
    assert narrative.counts(analysis, "same", "cpu").equivalent == 1
    # beyond a factor of two the factor is given
    halved = _analysis({"half": [0.25 * v for v in BASE]})
    assert " is 4.00× slower than bare" in narrative.score_sentence(t, halved, "half", "cpu")


def test_narrative_says_the_same_in_chinese() -> None:
    analysis, said, score = _stated("zh")
    t = language("zh")
    for platform, words in (("slow", "比 bare 慢"), ("fast", "比 bare 快"),
                            ("same", "在 ±2% 以内等效"), ("noisy", "差异不显著"),
                            ("few", "不下结论")):
        assert words in said[platform], said[platform]
        assert f"{score[platform].value:.3f}" in said[platform]
        if platform != "few":
            assert f"{score[platform].low:.3f} 至 {score[platform].high:.3f}" in said[platform]
    assert said["slow"].startswith("在CPU负载上，slow 比 bare 慢 ")
    assert narrative.counts_sentence(t, analysis, "fast", "cpu") == (
        "其 1 个序列：0 个显著更慢，1 个显著更快，0 个在 ±2% 以内等效，0 个无定论。")


def test_two_platforms_are_told_apart_only_when_their_intervals_do_not_overlap() -> None:
    t = language("en")
    apart = _analysis({"a": OUTCOMES["slow"], "b": OUTCOMES["fast"]})
    assert narrative.pair_sentences(t, apart, "cpu") == [
        "b does better than a on these workloads (their intervals do not overlap)."]
    close = _analysis({"a": OUTCOMES["same"], "b": OUTCOMES["noisy"]})
    assert narrative.pair_sentences(t, close, "cpu") == [
        "The intervals of a and b overlap: this run does not tell them apart on these "
        "workloads."]
    # a platform with no interval is never ranked
    unknown = _analysis({"a": FEW[0], "b": [1.3 * v for v in FEW[0]]}, FEW[1])
    assert narrative.pair_sentences(t, unknown, "cpu") == []


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_message_is_translated_with_the_same_placeholders() -> None:
    messages = catalogue.messages()
    # the sentences of the narrative, the template's headings and the workloads' words
    assert "1. Test environment" in messages and "Sequential 1 MiB reads." in messages
    assert any(m.startswith("On the {category} workloads") for m in messages)
    for code in LANGUAGES:
        if code == "en":
            continue
        assert catalogue.missing(code) == [], f"run scripts/catalogues.py and translate ({code})"
        t = language(code)
        for message in messages:
            translated = t._(message)
            assert _fields(translated) == _fields(message), (code, message, translated)


@pytest.mark.slow  # a CLI in a subprocess: make test, not test-fast
def test_bad_language_or_study_file_is_a_usage_error(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    for args, needle in ((["--lang", "fr"], "unknown language 'fr' (languages: en, zh)"),
                         (["--study", str(tmp_path / "s.docx")], "name a .html or .pdf file")):
        done = subprocess.run([*HVBENCH, "report", "latest", *args], capture_output=True,
                              text=True, env=env, check=False, timeout=60)
        assert done.returncode == 2, done.stderr
        assert needle in done.stderr


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Store, str]:
    """Bare metal and a QEMU guest, five samples a side: enough for verdicts."""
    home = tmp_path_factory.mktemp("study") / "home"
    done = subprocess.run(
        [*HVBENCH, "run", "--platform", "native,qemu-tcg", "--workload",
         "sysbench-cpu,stress-ng-syscall", "--param", "sysbench-cpu.events=200",
         "--param", "stress-ng-syscall.seconds=1", "--reps", "5", "--no-warmup", "--quiet"],
        capture_output=True, text=True, env=cli_env(home), timeout=900, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    store = Store(home / "results.sqlite")
    return home, store, store.resolve("latest")


def _pdf_text(path: Path, mode: str = "-layout") -> str:
    done = subprocess.run(["pdftotext", mode, str(path), "-"], capture_output=True,
                          text=True, check=True, timeout=60)
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_study_pdf_of_a_real_run(guest_run: tuple[Path, Store, str], lang: str,
                                 tmp_path: Path) -> None:
    if shutil.which("pdftotext") is None:
        pytest.fail("poppler-utils is not installed: make test installs it")
    home, store, run_id = guest_run
    target = tmp_path / f"study-{lang}.pdf"
    done = subprocess.run([*HVBENCH, "report", "latest", "--study", str(target),
                           "--lang", lang], capture_output=True, text=True,
                          env=cli_env(home), timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert target.read_bytes()[:5] == b"%PDF-"
    text = _pdf_text(target)
    flat = re.sub(r"\s+", " ", text)
    for heading in study.headings(lang):
        assert heading in flat, heading
    # the guest's configuration and its exact command line are in the document (a long
    # command line wraps anywhere, so it is looked for without white space)
    bare = re.sub(r"\s+", "", _pdf_text(target, "-raw"))  # in reading order, cell by cell
    assert "qemu-system-x86_64-acceltcg" in bare and "QEMUemulatorversion" in bare
    # every number the narrative states is the stored analysis's own
    analysis = analyse(store, run_id)
    t = language(lang)
    for category in narrative.categories(analysis):
        for sentence in narrative.category_paragraph(t, analysis, category):
            assert re.sub(r"\s+", "", sentence) in re.sub(r"\s+", "", text), sentence
        score = analysis.scores["qemu-tcg"][category]
        stated = narrative.score_sentence(t, analysis, "qemu-tcg", category)
        for value in (score.value, *((score.low, score.high) if score.known else ())):
            assert f"{value:.3f}" in stated, (value, stated)
        tally = narrative.counts(analysis, "qemu-tcg", category)
        series = [r for r in analysis.rows if r.category == category
                  and "qemu-tcg" in r.comparisons]
        assert tally.total == len(series)
        assert tally.slower == sum(r.comparisons["qemu-tcg"].verdict.kind == "slower"
                                   for r in series)
    fonts = subprocess.run(["pdffonts", str(target)], capture_output=True, text=True,
                           check=True, timeout=60).stdout
    # every font is embedded (Chromium embeds them as Type 3, without names)
    listed = [line for line in fonts.splitlines()[2:] if line.strip()]
    assert listed and all(" yes " in line for line in listed), fonts
    if lang == "zh":  # Chinese text that reads back as itself: real glyphs, not boxes
        # (a missing glyph is .notdef, which cannot map back to each character)
        assert "测试环境" in flat and "虚拟化开销研究报告" in flat and "更慢" in flat
        matched = subprocess.run(["fc-match", "--format=%{family}", "sans:lang=zh-cn"],
                                 capture_output=True, text=True, check=True, timeout=30)
        assert "CJK" in matched.stdout, matched.stdout
    # the pages render, with the chart's colours on them
    pages = subprocess.run(["pdftoppm", "-r", "40", "-png", str(target),
                            str(tmp_path / "page")], capture_output=True, check=True,
                           timeout=120)
    assert pages.returncode == 0 and len(list(tmp_path.glob("page-*.png"))) >= 4


def test_html_report_in_chinese_escapes_what_it_is_given() -> None:
    from hvbench.report import html

    analysis = _analysis(OUTCOMES)
    hostile = "<script>alert(1)</script>"
    analysis = dataclasses.replace(analysis, run=dataclasses.replace(
        analysis.run, host={"hostname": hostile}), warnings=[hostile])
    page = html.render(analysis, "zh")
    assert '<html lang="zh-Hans">' in page
    for heading in ("摘要", "警告", "结果", "各负载详情", "宿主机与平台"):
        assert f">{heading}</h2>" in page, heading
    assert "Summary" not in page and "Per workload" not in page
    slow = analysis.rows[0].comparisons["slow"]
    assert f"慢 {(1 / slow.performance - 1) * 100:.1f}%" in page  # the verdict, in Chinese
    assert "等效（±2% 以内）" in page and "无定论：波动太大" in page
    assert hostile not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page

"""A study's report (--mode=study): results.csv, summary.md, summary.png.

Formatting and drawing only, from the runs' results (`RunResult`, which
transformer/study.py reads from their workdirs) and the statistics of
transformer/study_stats.py; nothing here runs or asks which task a run
learnt. Drawn like transformer/plots.py: matplotlib's object API on the Agg
canvas (no pyplot, no display).
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any, NamedTuple, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from transformer import study_stats

RESULTS_FILE = 'results.csv'
SUMMARY_FILE = 'summary.md'
PICTURE_FILE = 'summary.png'
CONFIDENCE = 0.95
BETTER = {'max': 'higher is better', 'min': 'lower is better'}


class RunResult(NamedTuple):
  """One run of a study, as its workdir left it."""
  combination: str  # its directory name
  settings: tuple[tuple[str, str], ...]  # (varied key, value)
  seed: int
  workdir: str
  problem: str  # '' when the run has its test evaluation, else why not
  steps: int | None  # trained, from the last stop record
  wall_s: float | None  # training seconds, summed over its sessions
  checkpoint_step: int | None  # the one the test evaluation used
  evaluation: str | None  # the test evaluation's JSON
  metrics: dict[str, float]  # its numeric metrics (some ints)
  recall: dict[str, float]  # class -> recall, where it reports per_class
  # class -> training count, where its per_class has them (classification)
  train_counts: dict[str, int] = {}


def numeric_metrics(evaluation: dict[str, Any]) -> dict[str, int | float]:
  """The evaluation's top-level numbers (booleans, lists, texts and the
  per-class tables left out)."""
  return {name: value for name, value in evaluation.items()
          if isinstance(value, (int, float)) and not isinstance(value, bool)}


def train_counts(evaluation: dict[str, Any]) -> dict[str, int]:
  """class -> training count from the evaluation's 'per_class', if any."""
  per_class = evaluation.get('per_class')
  if not isinstance(per_class, dict):
    return {}
  return {str(name): int(scores['train_count'])
          for name, scores in per_class.items()
          if isinstance(scores, dict) and
          isinstance(scores.get('train_count'), int)}


def recalls(evaluation: dict[str, Any]) -> dict[str, float]:
  """class -> recall from the evaluation's 'per_class', if it has one."""
  per_class = evaluation.get('per_class')
  if not isinstance(per_class, dict):
    return {}
  return {str(name): float(scores['recall'])
          for name, scores in per_class.items()
          if isinstance(scores, dict) and
          isinstance(scores.get('recall'), (int, float))}


# ---------------------------------------------------------------------------
# Gathering: per combination, per seed.
# ---------------------------------------------------------------------------


def combination_names(results: Sequence[RunResult]) -> list[str]:
  """The combinations in the order of the results."""
  return list(dict.fromkeys(r.combination for r in results))


def by_seed(results: Sequence[RunResult], metric: str
            ) -> dict[str, dict[int, float | None]]:
  """combination -> {seed: the metric} over the runs with a result (None
  where the evaluation lacks the metric)."""
  table: dict[str, dict[int, float | None]] = {
      name: {} for name in combination_names(results)}
  for r in results:
    if not r.problem:
      table[r.combination][r.seed] = r.metrics.get(metric)
  return table


def ranked_metric(results: Sequence[RunResult],
                  headline: Sequence[str]) -> str | None:
  """The first headline metric that some run reports (the first of all,
  unless no run reports it)."""
  for metric in headline:
    if any(study_stats.finite(v.values())
           for v in by_seed(results, metric).values()):
      return metric
  return None


def intervals(results: Sequence[RunResult], metric: str
              ) -> dict[str, study_stats.Interval]:
  return {name: study_stats.describe(values.values(), CONFIDENCE)
          for name, values in by_seed(results, metric).items()}


def best_combination(results: Sequence[RunResult], metric: str,
                     direction: str | None) -> str | None:
  means = {name: i.mean for name, i in intervals(results, metric).items()}
  return study_stats.best(means, direction)


def mean_recalls(results: Sequence[RunResult]
                 ) -> dict[str, dict[str, float | None]]:
  """combination -> class -> the mean recall over its seeds."""
  table: dict[str, dict[str, list[float]]] = {
      name: {} for name in combination_names(results)}
  for r in results:
    if not r.problem:
      for name, value in r.recall.items():
        table[r.combination].setdefault(name, []).append(value)
  return {c: {name: study_stats.describe(values).mean
              for name, values in per_class.items()}
          for c, per_class in table.items()}


def class_columns(results: Sequence[RunResult],
                  classes: Sequence[tuple[str, int]]
                  ) -> list[tuple[str, int | None]]:
  """The classes to show: `classes` (by training frequency) first, then
  any other that an evaluation reports."""
  reported = {name for r in results for name in r.recall}
  known = [(name, count) for name, count in classes if name in reported]
  named = {name for name, _ in known}
  return known + [(name, None) for name in sorted(reported - named)]


# ---------------------------------------------------------------------------
# results.csv
# ---------------------------------------------------------------------------


def csv_table(results: Sequence[RunResult],
              headline: Sequence[str]) -> list[list[str]]:
  """The header and one row per run: combination, the varied settings
  (a variant's name in the column `variant`), seed, status, steps,
  wall_s, checkpoint_step, every numeric metric (the headline ones first;
  empty where a run lacks one), the workdir."""
  keys = [key for key, _ in results[0].settings] if results else []
  metrics = list(dict.fromkeys([*headline, *(m for r in results
                                              for m in r.metrics)]))
  header = ['combination', *keys, 'seed', 'status', 'steps', 'wall_s',
            'checkpoint_step', *metrics, 'workdir']
  rows = [header]
  for r in results:
    values = dict(r.settings)
    rows.append([r.combination, *(values[k] for k in keys), str(r.seed),
                 r.problem or 'finished', _cell(r.steps), _cell(r.wall_s),
                 _cell(r.checkpoint_step),
                 *(_cell(r.metrics.get(m)) for m in metrics), r.workdir])
  return rows


def _cell(value: float | int | None) -> str:
  return '' if value is None else str(value)


def write_csv(path: str, results: Sequence[RunResult],
              headline: Sequence[str]) -> str:
  with open(path, 'w', encoding='utf-8', newline='') as f:
    csv.writer(f).writerows(csv_table(results, headline))
  return path


# ---------------------------------------------------------------------------
# summary.md
# ---------------------------------------------------------------------------


def number(value: float | None, digits: int = 4) -> str:
  """A metric for the tables: `digits` significant digits, '' if none."""
  if value is None:
    return ''
  if not math.isfinite(value):
    return 'n/a'
  return f'{value:.{digits}g}'


def p_value(value: float | None) -> str:
  return 'n/a' if value is None or not math.isfinite(value) else (
      f'{value:.3g}')


def metric_table(results: Sequence[RunResult], metric: str,
                 direction: str | None) -> str:
  """A markdown table: per combination the seeds, mean, standard
  deviation, confidence interval, and its paired difference from the first
  combination with the paired t-test's p-value; the best in bold."""
  rows = intervals(results, metric)
  values = by_seed(results, metric)
  names = list(rows)
  best = study_stats.best({n: rows[n].mean for n in names}, direction)
  level = f'{CONFIDENCE:.0%}'
  lines = [f'| combination | seeds | mean | std | {level} CI | '
           f'difference from {names[0]} | p (paired t) |',
           '| --- | ---: | ---: | ---: | --- | ---: | ---: |']
  for name in names:
    i = rows[name]
    ci = (f'[{number(i.low)}, {number(i.high)}]' if i.low is not None
          else 'n/a')
    if name == names[0]:
      difference, p = '(reference)', ''
    else:
      pair = study_stats.paired(values[name], values[names[0]])
      difference = '' if pair.mean is None else f'{pair.mean:+.4g}'
      p = p_value(pair.p_value)
    shown = f'**{name}** (best)' if name == best else name
    lines.append(f'| {shown} | {i.n} | {number(i.mean)} | {number(i.std)} '
                 f'| {ci} | {difference} | {p} |')
  return '\n'.join(lines)


def recall_table(results: Sequence[RunResult],
                 classes: Sequence[tuple[str, int]]) -> str:
  """Markdown: the mean recall over seeds of each class (columns, by
  training frequency) per combination."""
  columns = class_columns(results, classes)
  means = mean_recalls(results)
  heads = [name if count is None else f'{name} ({count})'
           for name, count in columns]
  lines = ['| combination | ' + ' | '.join(heads) + ' |',
           '| --- |' + ' ---: |' * len(columns)]
  for combination, per_class in means.items():
    cells = [number(per_class.get(name), 3) for name, _ in columns]
    lines.append(f'| {combination} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def ranking_line(results: Sequence[RunResult], headline: Sequence[str],
                 directions: dict[str, str]) -> str:
  """One sentence: the best combination by the ranked metric."""
  metric = ranked_metric(results, headline)
  if metric is None:
    return ('No run reports a headline metric (' + ', '.join(headline) +
            '): nothing to rank.')
  direction = directions.get(metric)
  best = best_combination(results, metric, direction)
  skipped = headline[:list(headline).index(metric)]
  note = (f' ({", ".join(skipped)}: no run reports it)' if skipped else '')
  if best is None:
    return (f'Ranked by {metric}{note}: its direction is unknown, so no '
            'combination is marked best.')
  i = intervals(results, metric)[best]
  ci = (f', {CONFIDENCE:.0%} CI [{number(i.low)}, {number(i.high)}]'
        if i.low is not None else '')
  return (f'Best by {metric} ({BETTER[direction]}){note}: {best}, mean '
          f'{number(i.mean)} over {i.n} seed(s){ci}.')


def variants_markdown(variants: Sequence[tuple[str, Sequence[str]]]
                      ) -> str:
  """What each variant of --vary=variant=... stood for, as a list."""
  lines = ["The variants (the experiment's VARIANTS when the study started, "
           'recorded in study.json):', '']
  for name, assignments in variants:
    shown = ' '.join(f'`{a}`' for a in assignments) or (
        "the experiment's config as it is")
    lines.append(f'- **{name}**: {shown}')
  return '\n'.join(lines)


def summary_markdown(study_dir: str, command: str, seeds: int,
                     results: Sequence[RunResult], headline: Sequence[str],
                     directions: dict[str, str],
                     classes: Sequence[tuple[str, int]],
                     variants: Sequence[tuple[str, Sequence[str]]] = ()
                     ) -> str:
  """summary.md: how the study was run (and what its variants set), the
  best combination, a table per headline metric, the recall per class
  (where evaluations report it), and the runs without a result."""
  names = combination_names(results)
  level = f'{CONFIDENCE:.0%}'
  parts = [
      f'# Study {study_dir}',
      f'```sh\n{command}\n```',
      *([variants_markdown(variants)] if variants else []),
      f'{len(names)} combination(s) x {seeds} seed(s) (seed=0..{seeds - 1}); '
      'each run evaluated on the test split with its best checkpoint where '
      'it keeps one (eval.best_metric), else its last. Per combination: the '
      f'mean over seeds, their standard deviation and the {level} '
      'confidence interval of the mean, mean ± t(0.975, n-1) · s / √n '
      '(Student t); n/a under 2 seeds. The difference from the first '
      'combination is paired by seed (seed k of each shares the data '
      'order and initialisation where the varied settings leave them '
      'alike) with the p-value of a paired t-test '
      '(scipy.stats.ttest_rel): a small p says the difference is larger '
      'than the seeds\' noise. Every run\'s numbers are in results.csv.',
      ranking_line(results, headline, directions)]
  for metric in headline:
    direction = directions.get(metric)
    how = f' ({BETTER[direction]})' if direction else ''
    if not any(study_stats.finite(v.values())
               for v in by_seed(results, metric).values()):
      parts.append(f'## {metric}\n\nNo run reports it.')
      continue
    parts.append(f'## {metric}{how}\n\n' +
                 metric_table(results, metric, direction))
  if any(r.recall for r in results):
    parts.append('## Recall per class\n\nThe mean over seeds; classes by '
                 'training frequency, most frequent first (the training '
                 'counts its test evaluation reports).\n\n' +
                 recall_table(results, classes))
  missing = [r for r in results if r.problem]
  if missing:
    parts.append('## Runs without a result\n\n' + '\n'.join(
        f'- {r.combination} seed {r.seed}: {r.problem}' for r in missing))
  return '\n\n'.join(parts) + '\n'


# ---------------------------------------------------------------------------
# summary.png
# ---------------------------------------------------------------------------


def draw(path: str, results: Sequence[RunResult], metric: str,
         direction: str | None, classes: Sequence[tuple[str, int]]) -> str:
  """The ranked metric per combination (each seed, the mean and its
  interval; the best in orange) and, where evaluations report recall per
  class, the mean recall of each class per combination."""
  names = combination_names(results)
  columns = class_columns(results, classes)
  panels = 2 if columns else 1
  width = max(4.5, 1.0 * len(names) + 2.0)
  widths = [width] + ([max(4.5, 0.8 * len(columns) + 2.5)] if columns else [])
  figure = Figure(figsize=(sum(widths), 4.8), dpi=100, layout='constrained')
  FigureCanvasAgg(figure)
  axes = figure.subplots(1, panels, squeeze=False,
                         width_ratios=widths)[0]
  _draw_metric(axes[0], results, metric, direction, names)
  if columns:
    _draw_recalls(axes[1], results, columns, names)
  figure.savefig(path)
  return path


def _colour(index: int) -> str:
  """The combination's colour, the same in both panels."""
  return f'C{index % 10}'


def _draw_metric(ax, results: Sequence[RunResult], metric: str,
                 direction: str | None, names: Sequence[str]) -> None:
  rows = intervals(results, metric)
  values = by_seed(results, metric)
  best = study_stats.best({n: rows[n].mean for n in names}, direction)
  for x, name in enumerate(names):
    seeds = study_stats.finite(values[name].values())
    ax.scatter([x] * len(seeds), seeds, s=14, color='0.55', zorder=2,
               label='one seed' if x == 0 else None)
    i = rows[name]
    if i.mean is None:
      continue
    error = ([[i.mean - i.low], [i.high - i.mean]] if i.low is not None
             else None)
    ax.errorbar([x], [i.mean], yerr=error, fmt='*' if name == best else 'o',
                markersize=12 if name == best else 6, capsize=5, zorder=3,
                color=_colour(x))
  # One line per key and one per value: long values stay apart.
  labels = [name.replace(',', '\n').replace('=', '=\n') +
            ('\n(best)' if name == best else '') for name in names]
  ax.set_xticks(range(len(names)), labels, fontsize=8)
  ax.set_xlim(-0.6, len(names) - 0.4)
  ax.set_ylabel(metric + (f' ({BETTER[direction]})' if direction else ''))
  ax.set_title(f'Test {metric}\nthe mean and its {CONFIDENCE:.0%} CI over '
               'seeds', fontsize=10)
  ax.grid(alpha=0.3, axis='y')
  ax.legend(fontsize=8)


def _draw_recalls(ax, results: Sequence[RunResult],
                  columns: Sequence[tuple[str, int | None]],
                  names: Sequence[str]) -> None:
  means = mean_recalls(results)
  for index, name in enumerate(names):
    ys = [means[name].get(c) for c, _ in columns]
    ax.plot(range(len(columns)),
            [math.nan if y is None else y for y in ys], marker='o',
            markersize=4, label=name, color=_colour(index))
  ax.set_xticks(range(len(columns)),
                [c if n is None else f'{c}\n({n})' for c, n in columns],
                fontsize=8)
  ax.set_ylim(-0.03, 1.03)
  ax.set_ylabel('recall (mean over seeds)')
  ax.set_title('Recall per class\nclasses by training frequency',
               fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)


def write(study_dir: str, command: str, seeds: int,
          results: Sequence[RunResult], headline: Sequence[str],
          directions: dict[str, str], classes: Sequence[tuple[str, int]],
          variants: Sequence[tuple[str, Sequence[str]]] = ()) -> list[str]:
  """Writes results.csv, summary.md and (when a headline metric was
  reported) summary.png into `study_dir`; returns their paths. `variants`:
  (name, assignments) of the variants the study picks, for summary.md."""
  paths = [write_csv(os.path.join(study_dir, RESULTS_FILE), results,
                     headline)]
  summary = os.path.join(study_dir, SUMMARY_FILE)
  with open(summary, 'w', encoding='utf-8') as f:
    f.write(summary_markdown(study_dir, command, seeds, results, headline,
                             directions, classes, variants))
  paths.append(summary)
  metric = ranked_metric(results, headline)
  if metric is not None:
    paths.append(draw(os.path.join(study_dir, PICTURE_FILE), results,
                      metric, directions.get(metric), classes))
  return paths

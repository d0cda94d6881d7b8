"""How well a classifier does per class: precision, recall, F1 and the confusion matrix.

Unlike the book's accuracy (``calc_accuracy_loader``: one number for all classes): where the errors are. A
class's precision is the share of texts predicted as it that are it, its recall the share of its texts found,
F1 their harmonic mean; the confusion matrix counts each (true, predicted) pair.

>>> print(classification_report([0, 1, 1, 0], [0, 1, 0, 0], ["ham", "spam"]))
test accuracy: 75.00% (4 texts)
class  precision  recall      F1  texts
ham      100.00%  66.67%  80.00%      3
spam      50.00% 100.00%  66.67%      1
confusion matrix (rows: true class, columns: predicted):
        ham  spam
ham       2     1
spam      0     1
"""

from __future__ import annotations


def confusion_matrix(predicted, true, num_classes: int) -> list[list[int]]:
    """``matrix[t][p]``: texts of class ``t`` predicted as ``p``."""
    matrix = [[0] * num_classes for _ in range(num_classes)]
    for p, t in zip(predicted, true):
        matrix[t][p] += 1
    return matrix


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def classification_report(predicted, true, classes) -> str:
    """The test accuracy, each class's precision, recall and F1 (0 where undefined), and the confusion matrix."""
    matrix = confusion_matrix(predicted, true, len(classes))
    width = max(5, *(len(name) for name in classes))
    lines = [f"test accuracy: {100 * _share(sum(matrix[i][i] for i in range(len(classes))), len(true)):.2f}% "
             f"({len(true)} texts)",
             f"{'class':<{width}}  precision  recall      F1  texts"]
    for i, name in enumerate(classes):
        found, predicted_as, actual = matrix[i][i], sum(row[i] for row in matrix), sum(matrix[i])
        precision, recall = _share(found, predicted_as), _share(found, actual)
        f1 = _share(2 * precision * recall, precision + recall)
        lines.append(f"{name:<{width}}  {100 * precision:8.2f}% {100 * recall:6.2f}% {100 * f1:6.2f}%  {actual:5d}")
    cell = max(5, *(len(name) for name in classes))
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    lines.append(" " * width + "".join(f" {name:>{cell}}" for name in classes))
    lines += [f"{name:<{width}}" + "".join(f" {count:>{cell}}" for count in row) for name, row in zip(classes, matrix)]
    return "\n".join(lines)

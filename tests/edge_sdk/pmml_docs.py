"""PMML documents written from fitted scikit-learn models, in the PMML 4.4 schema.

No third-party wheel ships PMML files, and sklearn2pmml needs a Java build toolchain; these are
the few elements the models need (DataDictionary, MiningSchema, RegressionModel, TreeModel).
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import numpy as np

HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">\n'
    '<Header description="written by edge-sdk tests"/>\n'
)


def _dictionary(features: list[str], target: str, classes: list[str] | None) -> str:
    fields = [f'<DataField name="{f}" optype="continuous" dataType="double"/>' for f in features]
    if classes is None:
        fields.append(f'<DataField name="{target}" optype="continuous" dataType="double"/>')
    else:
        values = "".join(f"<Value value={quoteattr(c)}/>" for c in classes)
        fields.append(
            f'<DataField name="{target}" optype="categorical" dataType="string">'
            f"{values}</DataField>"
        )
    return f'<DataDictionary numberOfFields="{len(fields)}">{"".join(fields)}</DataDictionary>\n'


def _mining(features: list[str], target: str) -> str:
    used = "".join(f'<MiningField name="{f}"/>' for f in features)
    return f'<MiningSchema>{used}<MiningField name="{target}" usageType="target"/></MiningSchema>'


def linear_regression(coef: np.ndarray, intercept: float) -> str:
    """A linear regression: one RegressionTable, no normalization."""
    features = [f"x{i}" for i in range(len(coef))]
    predictors = "".join(
        f'<NumericPredictor name="{f}" coefficient="{float(w)!r}"/>'
        for f, w in zip(features, coef, strict=True)
    )
    return (
        HEAD
        + _dictionary(features, "y", None)
        + '<RegressionModel functionName="regression">'
        + _mining(features, "y")
        + f'<RegressionTable intercept="{float(intercept)!r}">{predictors}</RegressionTable>'
        + "</RegressionModel>\n</PMML>\n"
    )


def logistic_regression(coef: np.ndarray, intercept: np.ndarray, classes: list[str]) -> str:
    """A multinomial logistic regression: one RegressionTable per class, softmax."""
    features = [f"x{i}" for i in range(coef.shape[1])]
    tables = []
    for row, b, c in zip(coef, intercept, classes, strict=True):
        predictors = "".join(
            f'<NumericPredictor name="{f}" coefficient="{float(w)!r}"/>'
            for f, w in zip(features, row, strict=True)
        )
        tables.append(
            f'<RegressionTable intercept="{float(b)!r}" targetCategory={quoteattr(c)}>'
            f"{predictors}</RegressionTable>"
        )
    return (
        HEAD
        + _dictionary(features, "species", classes)
        + '<RegressionModel functionName="classification" normalizationMethod="softmax">'
        + _mining(features, "species")
        + "".join(tables)
        + "</RegressionModel>\n</PMML>\n"
    )


def decision_tree(tree: object, n_features: int, classes: list[str]) -> str:
    """A fitted DecisionTreeClassifier's ``tree_`` as a TreeModel with class distributions."""
    t = tree
    features = [f"x{i}" for i in range(n_features)]

    def node(i: int, predicate: str) -> str:
        counts = t.value[i][0] * t.weighted_n_node_samples[i]  # sklearn keeps fractions
        total = float(counts.sum())
        scores = "".join(
            f'<ScoreDistribution value={quoteattr(c)} recordCount="{float(n)!r}" '
            f'probability="{float(n) / total!r}"/>'
            for c, n in zip(classes, counts, strict=True)
        )
        best = classes[int(np.argmax(counts))]
        children = ""
        if t.children_left[i] != -1:
            f, thr = features[t.feature[i]], float(t.threshold[i])
            children = node(
                t.children_left[i],
                f'<SimplePredicate field="{f}" operator="lessOrEqual" value="{thr!r}"/>',
            ) + node(
                t.children_right[i],
                f'<SimplePredicate field="{f}" operator="greaterThan" value="{thr!r}"/>',
            )
        return (
            f'<Node id="{i}" score={quoteattr(best)} recordCount="{total!r}">'
            f"{predicate}{scores}{children}</Node>"
        )

    return (
        HEAD
        + _dictionary(features, "species", classes)
        + '<TreeModel functionName="classification" splitCharacteristic="binarySplit">'
        + _mining(features, "species")
        + node(0, "<True/>")
        + "</TreeModel>\n</PMML>\n"
    )

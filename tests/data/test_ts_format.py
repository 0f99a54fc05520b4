"""The .ts reader on small files written here: values, label order, headers, one clear error per bad file."""

from __future__ import annotations

import re

import numpy as np
import pytest

from plugattn.data import DatasetError, DatasetNotFoundError, read_ts

MULTIVARIATE = """\
# Toy problem: two dimensions of three values
#   comments and blank lines are skipped

@problemName Toy
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength true
@seriesLength 3
@classLabel true up down
@data
1.0,2.0,3.0:4.0,5.0,6.0:down
# a comment between cases

-1,0.5,2e1:7,8,9:up
"""

UNIVARIATE = """\
@problemName Uni
@univariate true
@classLabel true 0 1 2
@data
1,2,3,4:2
5,6,7,8:0
"""


def _write(tmp_path, text, name="Toy_TRAIN.ts"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_multivariate_values_and_label_order(tmp_path):
    ts = read_ts(_write(tmp_path, MULTIVARIATE))
    assert ts.problem_name == "Toy" and ts.classes == ["up", "down"]
    assert ts.values.dtype == np.float64 and ts.values.shape == (2, 2, 3)
    np.testing.assert_array_equal(ts.values, [[[1, 2, 3], [4, 5, 6]], [[-1, 0.5, 20], [7, 8, 9]]])
    # labels follow @classLabel's order, not the order in which the cases use them
    assert ts.labels.dtype == np.int64 and ts.labels.tolist() == [1, 0]


def test_univariate_without_dimensions(tmp_path):
    ts = read_ts(_write(tmp_path, UNIVARIATE))
    assert ts.values.shape == (2, 1, 4) and ts.classes == ["0", "1", "2"] and ts.labels.tolist() == [2, 0]
    np.testing.assert_array_equal(ts.values[:, 0], [[1, 2, 3, 4], [5, 6, 7, 8]])


def test_header_keys_any_case_tabs_and_crlf(tmp_path):
    text = "@PROBLEMNAME Shout\r\n@TimeStamps FALSE\r\n@classlabel\tTrue  b  a\r\n@Data\r\n1,2:3,4:a\r\n"
    ts = read_ts(_write(tmp_path, text))
    assert ts.problem_name == "Shout" and ts.classes == ["b", "a"] and ts.labels.tolist() == [1]
    np.testing.assert_array_equal(ts.values, [[[1, 2], [3, 4]]])


def test_equal_length_false_and_wrong_series_length_are_not_trusted(tmp_path):
    """Real files say @equalLength false (Blink) or a wrong @seriesLength (EyesOpenShut): the cases decide."""
    text = "@equalLength false\n@seriesLength 99\n@classLabel true a\n@data\n1,2,3:a\n4,5,6:a\n"
    assert read_ts(_write(tmp_path, text)).values.shape == (2, 1, 3)


HEAD = "@problemName Bad\n@dimensions 2\n@classLabel true a b\n@data\n"  # cases start on line 5
BAD_FILES = {
    "missing @data": ("@classLabel true a b\n1,2:3,4:a\n", r"line 2: expected a '@' header line"),
    "header only": ("@classLabel true a b\n", r"no @data line"),
    "empty data": (HEAD + "\n# nothing\n", r"no cases after @data"),
    "unequal within a case": (
        HEAD + "1,2,3:4,5:a\n",
        r"line 5: dimension 1 has 2 values but dimension 0 of line 5 has 3; series of unequal length",
    ),
    "unequal across cases": (
        HEAD + "1,2,3:4,5,6:a\n1,2:4,5:b\n",
        r"line 6: dimension 0 has 2 values but dimension 0 of line 5 has 3",
    ),
    "unknown label": (
        HEAD + "1,2:3,4:a\n1,2:3,4:c\n",
        r"line 6: class label 'c' is not in @classLabel \(a, b\)",
    ),
    "timestamps true": ("@timeStamps true\n@classLabel true a\n@data\n", r"line 1: @timeStamps true is not"),
    "timestamp pairs": (HEAD + "(0,1.0),(1,2.0):(0,3),(1,4):a\n", r"line 5: a \(time, value\) pair"),
    "missing value": (HEAD + "1,?:3,4:a\n", r"line 5: missing values \('\?'\) are not supported"),
    "NaN value": (HEAD + "1,2:3,4:a\n1,NaN:3,4:b\n", r"line 6: a non-finite value \(NaN or inf\)"),
    "wrong dimensions (header)": (HEAD + "1,2:3,4:5,6:a\n", r"line 5: 3 dimensions, but the header gives 2"),
    "wrong dimensions (first case)": (
        "@classLabel true a\n@data\n1,2:3,4:a\n1,2:a\n",
        r"line 4: 1 dimensions, but line 3 gives 2",
    ),
    "no label": (HEAD + "1,2,3\n", r"line 5: no ':' before a class label"),
    "not a number": (HEAD + "1,2:3,x4:a\n", r"line 5: 'x4' is not a number"),
    "empty value": (HEAD + "1,2:3,4:a\n1,:3,4:b\n", r"line 6: '' is not a number"),
    "no classLabel": ("@problemName X\n@data\n1,2:a\n", r"no @classLabel: the header must list the classes"),
    "classLabel false": (
        "@classLabel false\n@data\n1,2\n",
        r"line 1: @classLabel false: the header must list",
    ),
    "classLabel without labels": (
        "@classLabel true\n@data\n",
        r"line 1: @classLabel true lists no class labels",
    ),
    "repeated class": (
        "@classLabel true a b a\n@data\n",
        r"line 1: @classLabel lists \['a'\] more than once",
    ),
    "regression": (
        "@targetLabel true\n@data\n",
        r"line 1: @targetLabel true \(regression\) is not supported",
    ),
    "bad flag": (
        "@univariate maybe\n@classLabel true a\n@data\n",
        r"line 1: @univariate must be true or false",
    ),
    "bad count": ("@dimensions two\n@classLabel true a\n@data\n", r"line 1: @dimensions must be a positive"),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_bad_file_gives_one_clear_error_naming_it(tmp_path, case):
    text, message = BAD_FILES[case]
    path = _write(tmp_path, text, "Bad_TRAIN.ts")
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(path))}(, |: ).*{message}"):
        read_ts(path)


def test_missing_file(tmp_path):
    with pytest.raises(
        DatasetNotFoundError, match=rf"{re.escape(str(tmp_path / 'nope.ts'))}: file not found"
    ):
        read_ts(tmp_path / "nope.ts")


def test_non_utf8_comment_is_harmless(tmp_path):
    """SelfRegulationSCP1's header says "µV" in Latin-1."""
    path = tmp_path / "Latin_TRAIN.ts"
    path.write_bytes(b"#Amplitude range: +/-1000 \xb5V\n@classLabel true a\n@data\n1,2:a\n")
    assert read_ts(path).values.shape == (1, 1, 2)

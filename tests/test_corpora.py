"""Corpus loaders: labels from names on the real sample, and name-level edge cases."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from pipeline.corpora import LOADERS, Clip, Rejection, cremad, emodb, ravdess, savee, scan, tess
from pipeline.params import ParamsError
from pipeline.vocab import EMOTIONS


def touch(root: Path, *names: str) -> list[Path]:
    """Create tiny fake files (loaders never decode audio); return their paths."""
    paths = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not audio")
        paths.append(path)
    return paths


def by_name(items: list[Clip] | list[Rejection]) -> dict:
    return {item.path.name: item for item in items}


# --- the real sample (counts verified by hand with ls / awk) ---------------------------

SAMPLE = {
    "ravdess": {
        "emotion": {"neutral": 8, "calm": 16, "happy": 16, "sad": 16, "angry": 16,
                    "fearful": 16, "disgust": 16, "surprised": 16},
        "speaker": {"ravdess:01": 60, "ravdess:02": 60},
        "gender": {"ravdess:01": "male", "ravdess:02": "female"},
        "token": lambda stem: stem.split("-")[2],
    },
    "tess": {
        "emotion": {e: 20 for e in ("angry", "disgust", "fearful", "happy", "neutral", "surprised", "sad")},
        "speaker": {"tess:OAF": 70, "tess:YAF": 70},
        "gender": {"tess:OAF": "female", "tess:YAF": "female"},
        "token": lambda stem: stem.rsplit("_", 1)[1],
    },
    "savee": {
        "emotion": {"angry": 15, "disgust": 15, "fearful": 15, "happy": 15, "neutral": 30, "sad": 15, "surprised": 15},
        "speaker": {"savee:DC": 120},
        "gender": {"savee:DC": "male"},
        "token": lambda stem: stem[3:].rstrip("0123456789"),
    },
    "emodb": {
        "emotion": {"angry": 26, "boredom": 15, "disgust": 1, "fearful": 10, "happy": 18, "neutral": 21, "sad": 16},
        "speaker": {"emodb:03": 49, "emodb:08": 58},
        "gender": {"emodb:03": "male", "emodb:08": "female"},
        "token": lambda stem: stem[5],
    },
}


@pytest.mark.parametrize("corpus", sorted(SAMPLE))
def test_sample_every_file_labelled(sample_dir: Path, corpus: str) -> None:
    expected = SAMPLE[corpus]
    wavs = sorted(Path(d) / f for d, _, files in os.walk(sample_dir / corpus) for f in files if f.endswith(".wav"))
    clips, rejections = scan(corpus, sample_dir / corpus)
    assert rejections == []
    assert [c.path for c in clips] == wavs
    assert len(clips) == sum(expected["emotion"].values())
    assert Counter(c.emotion for c in clips) == expected["emotion"]
    assert Counter(c.speaker for c in clips) == expected["speaker"]
    assert {c.speaker: c.gender for c in clips} == expected["gender"]
    # source labels are the name tokens, counted here independently of the loader
    assert Counter(c.source_label for c in clips) == Counter(expected["token"](p.stem) for p in wavs)
    assert all(c.corpus == corpus and c.clip_id.startswith(f"{corpus}:") for c in clips)
    assert len({c.clip_id for c in clips}) == len(clips)


def test_sample_clip_ids_unique_across_corpora(sample_dir: Path) -> None:
    ids = [c.clip_id for corpus in SAMPLE for c in scan(corpus, sample_dir / corpus)[0]]
    assert len(ids) == len(set(ids)) == 487


def test_sample_fields(sample_dir: Path) -> None:
    (clip,) = [c for c in scan("ravdess", sample_dir / "ravdess")[0] if c.path.stem == "03-01-05-02-01-02-02"]
    assert (clip.clip_id, clip.speaker, clip.gender, clip.emotion, clip.source_label) == (
        "ravdess:03-01-05-02-01-02-02", "ravdess:02", "female", "angry", "05")
    assert clip.extra == {"intensity": "strong", "statement": "01", "repetition": "02", "vocal_channel": "speech"}
    ps = [c for c in scan("tess", sample_dir / "tess")[0] if c.source_label == "ps"]
    assert {c.path.parent.name for c in ps} == {"OAF_Pleasant_surprise", "YAF_pleasant_surprised"}
    assert {c.emotion for c in ps} == {"surprised"}
    clip = by_name(scan("savee", sample_dir / "savee")[0])["DC_sa01.wav"]
    assert (clip.clip_id, clip.emotion, clip.source_label) == ("savee:DC_sa01", "sad", "sa")
    clip = by_name(scan("emodb", sample_dir / "emodb")[0])["03a01Fa.wav"]
    assert (clip.speaker, clip.gender, clip.emotion, clip.extra) == (
        "emodb:03", "male", "happy", {"text": "a01", "version": "a"})


# --- all loaders ---------------------------------------------------------------------

def test_registry() -> None:
    assert LOADERS == {"ravdess": ravdess.LOADER, "tess": tess.LOADER, "savee": savee.LOADER,
                       "cremad": cremad.LOADER, "emodb": emodb.LOADER}
    assert all(LOADERS[m.CORPUS].parse is m.parse for m in (ravdess, tess, savee, cremad, emodb))


@pytest.mark.parametrize("corpus", sorted(LOADERS))
def test_non_audio_suffixes_ignored(tmp_path: Path, corpus: str) -> None:
    touch(tmp_path, "readme.txt", "VideoDemographics.csv.bak", "sub/notes.md", "sub/03a01Fa.wav.bak")
    assert scan(corpus, tmp_path) == ([], [])


@pytest.mark.parametrize("corpus", sorted(LOADERS))
def test_unknown_option_raises(tmp_path: Path, corpus: str) -> None:
    with pytest.raises(ParamsError, match=rf"ingest\.{corpus}\.shuffle is not a {corpus} option"):
        scan(corpus, tmp_path, options={"shuffle": True})


@pytest.mark.parametrize("corpus, name", [
    ("ravdess", "Actor_01/03-01-05-01-01-01-01.WAV"), ("tess", "OAF_back_angry.WAV"),
    ("savee", "ALL/DC_a01.WAV"), ("cremad", "1001_DFA_ANG_XX.WAV"), ("emodb", "wav/03a01Fa.WAV"),
])
def test_uppercase_suffix_found(tmp_path: Path, corpus: str, name: str) -> None:
    touch(tmp_path, name)
    clips, rejections = scan(corpus, tmp_path)
    assert [c.path.name for c in clips] == [Path(name).name] and rejections == []
    assert clips[0].emotion in EMOTIONS


# --- RAVDESS -------------------------------------------------------------------------

def test_ravdess_song_excluded_by_default(tmp_path: Path) -> None:
    touch(tmp_path, "Actor_05/03-02-03-01-01-01-05.wav")
    clips, (rejection,) = scan("ravdess", tmp_path)
    assert clips == [] and rejection.kind == "excluded"
    assert "ingest.ravdess.include_song" in rejection.reason


def test_ravdess_song_included_with_option(tmp_path: Path) -> None:
    touch(tmp_path, "Actor_05/03-02-03-01-01-01-05.wav")
    (clip,), rejections = scan("ravdess", tmp_path, options={"include_song": True})
    assert rejections == []
    assert (clip.emotion, clip.gender, clip.extra["vocal_channel"]) == ("happy", "male", "song")


def test_ravdess_include_song_must_be_bool(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="include_song='yes' must be true or false"):
        scan("ravdess", tmp_path, options={"include_song": "yes"})


def test_ravdess_video_modality_excluded(tmp_path: Path) -> None:
    touch(tmp_path, "01-01-03-01-01-01-05.mp4", "02-01-03-01-01-01-05.mp4", "01-01-03-01-01-01-05.wav")
    clips, rejections = scan("ravdess", tmp_path)
    assert clips == [] and len(rejections) == 3
    assert all(r.kind == "excluded" and "video modality" in r.reason for r in rejections)


def test_ravdess_duplicate_keeps_first(tmp_path: Path) -> None:
    first, second = touch(tmp_path, "a/Actor_12/03-01-05-01-02-01-12.wav", "b/Actor_12/03-01-05-01-02-01-12.wav")
    (clip,), (rejection,) = scan("ravdess", tmp_path)
    assert clip.path == first and clip.clip_id == "ravdess:03-01-05-01-02-01-12"
    assert (rejection.path, rejection.reason, rejection.kind) == (second, f"duplicate of {first}", "rejected")


# --- TESS ----------------------------------------------------------------------------

def test_tess_folder_spelling_is_ignored(tmp_path: Path) -> None:
    touch(tmp_path, "OAF_Pleasant_surprise/OAF_back_ps.wav", "YAF_pleasant_surprised/YAF_back_ps.wav",
          "OAF_Fear/OAF_back_fear.wav", "YAF_fear/YAF_bar_fear.wav", "OAF_angry/OAF_bar_sad.wav")
    clips, rejections = scan("tess", tmp_path)
    assert rejections == []
    assert {c.clip_id: c.emotion for c in clips} == {
        "tess:OAF_back_ps": "surprised", "tess:YAF_back_ps": "surprised", "tess:OAF_back_fear": "fearful",
        "tess:YAF_bar_fear": "fearful", "tess:OAF_bar_sad": "sad"}


@pytest.mark.parametrize("name, clip_id, emotion", [
    ("OA_bite_neutral.wav", "tess:OAF_bite_neutral", "neutral"),  # misnamed in the common release
    ("oaf_Back_ANGRY.wav", "tess:OAF_back_angry", "angry"),
    ("OAF_ bar__disgust .wav", "tess:OAF_bar_disgust", "disgust"),
    ("YAF_chair_pleasant_surprise.wav", "tess:YAF_chair_ps", "surprised"),
    ("YAF_chalk_Pleasant_Surprised.wav", "tess:YAF_chalk_ps", "surprised"),
    ("YAF_chat_surprise.wav", "tess:YAF_chat_ps", "surprised"),
    ("OAF_dog_fearful.wav", "tess:OAF_dog_fear", "fearful"),
])
def test_tess_irregular_names(tmp_path: Path, name: str, clip_id: str, emotion: str) -> None:
    touch(tmp_path, f"folder/{name}")
    (clip,), rejections = scan("tess", tmp_path)
    assert rejections == []
    assert (clip.clip_id, clip.emotion, clip.speaker, clip.gender) == (clip_id, emotion, clip_id[:8], "female")


def test_tess_erratum_recorded(tmp_path: Path) -> None:
    touch(tmp_path, "OAF_neutral/OA_bite_neutral.wav")
    (clip,), _ = scan("tess", tmp_path)
    assert clip.extra == {"word": "bite", "age": 64, "erratum": "named 'OA_bite_neutral', read as 'OAF_bite_neutral'"}


def test_tess_nested_copy_and_spelling_variant_are_duplicates(tmp_path: Path) -> None:
    first, copy, variant = touch(
        tmp_path, "TESS data/OAF_angry/OAF_back_angry.wav", "tess data/TESS data/OAF_angry/OAF_back_angry.wav",
        "tess data/variants/OAF_back_anger.wav")
    (clip,), rejections = scan("tess", tmp_path)
    assert clip.path == first
    assert {r.path: r.reason for r in rejections} == {copy: f"duplicate of {first}", variant: f"duplicate of {first}"}


# --- SAVEE ---------------------------------------------------------------------------

def test_savee_both_layouts_give_identical_clips(tmp_path: Path) -> None:
    touch(tmp_path, "kaggle/ALL/DC_a01.wav", "kaggle/ALL/JK_sa03.wav", "kaggle/ALL/KL_su15.wav")
    touch(tmp_path, "orig/AudioData/DC/a01.wav", "orig/AudioData/JK/sa03.wav", "orig/AudioData/KL/su15.wav")
    flat, _ = scan("savee", tmp_path / "kaggle")
    original, _ = scan("savee", tmp_path / "orig")
    assert [c.clip_id for c in flat] == [c.clip_id for c in original] == [
        "savee:DC_a01", "savee:JK_sa03", "savee:KL_su15"]
    assert [(c.emotion, c.speaker, c.gender, c.source_label) for c in flat] == [
        (c.emotion, c.speaker, c.gender, c.source_label) for c in original] == [
        ("angry", "savee:DC", "male", "a"), ("sad", "savee:JK", "male", "sa"), ("surprised", "savee:KL", "male", "su")]
    both, duplicates = scan("savee", tmp_path)
    assert len(both) == 3 and all(r.reason.startswith("duplicate of ") for r in duplicates) and len(duplicates) == 3


def test_savee_neutral_has_thirty_sentences(tmp_path: Path) -> None:
    touch(tmp_path, "ALL/JE_n30.wav")
    (clip,), _ = scan("savee", tmp_path)
    assert (clip.emotion, clip.extra) == ("neutral", {"sentence": "30"})


# --- CREMA-D -------------------------------------------------------------------------

DEMOGRAPHICS = (
    "ActorID,Age,Sex,Race,Ethnicity\n"
    "1001,51,Male,Caucasian,Not Hispanic\n"
    "1002,21,Female,Caucasian,Not Hispanic\n"
)


def test_cremad_without_demographics(tmp_path: Path) -> None:
    touch(tmp_path, "AudioWAV/1001_DFA_ANG_XX.wav")
    (clip,), rejections = scan("cremad", tmp_path)
    assert rejections == []
    assert (clip.clip_id, clip.speaker, clip.gender, clip.emotion, clip.source_label) == (
        "cremad:1001_DFA_ANG_XX", "cremad:1001", "unknown", "angry", "ANG")
    assert clip.extra == {"sentence": "DFA", "level": "unspecified"}


def test_cremad_with_demographics_anywhere(tmp_path: Path) -> None:
    touch(tmp_path, "AudioWAV/1001_DFA_ANG_XX.wav", "AudioWAV/1002_IEO_HAP_HI.wav", "AudioWAV/1003_TIE_SAD_LO.wav")
    (tmp_path / "meta" / "info").mkdir(parents=True)
    (tmp_path / "meta" / "info" / "VideoDemographics.csv").write_text(DEMOGRAPHICS)
    clips, rejections = scan("cremad", tmp_path)
    assert rejections == []
    assert [(c.gender, c.extra.get("age"), c.extra["level"]) for c in clips] == [
        ("male", 51, "unspecified"), ("female", 21, "high"), ("unknown", None, "low")]  # 1003 not in the table


def test_cremad_demographics_missing_column_raises(tmp_path: Path) -> None:
    (tmp_path / "VideoDemographics.csv").write_text("ActorID,Age\n1001,51\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['Sex'\]"):
        scan("cremad", tmp_path)


# --- EMO-DB --------------------------------------------------------------------------


def test_emodb_speaker_sex_from_documentation(tmp_path: Path) -> None:
    touch(tmp_path, *(f"{s}b10Lc.wav" for s in ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")))
    clips, _ = scan("emodb", tmp_path)
    assert {c.speaker[-2:]: c.gender for c in clips} == {
        "03": "male", "10": "male", "11": "male", "12": "male", "15": "male",
        "08": "female", "09": "female", "13": "female", "14": "female", "16": "female"}
    assert {c.emotion for c in clips} == {"boredom"}


# --- bad names, every corpus ------------------------------------------------------------

BAD_NAMES = [
    ("ravdess", "03-01-09-01-01-01-01.wav", "emotion code '09'"),
    ("ravdess", "03-01-05-01-01-01-25.wav", "actor code '25'"),
    ("ravdess", "03-01-05-01-01-01-00.wav", "actor code '00'"),
    ("ravdess", "03-01-01-02-01-01-01.wav", "no strong neutral"),
    ("ravdess", "03-01-05-03-01-01-01.wav", "intensity code '03'"),
    ("ravdess", "04-01-05-01-01-01-01.wav", "modality code '04'"),
    ("ravdess", "03-01-05-01-03-01-01.wav", "statement code '03'"),
    ("ravdess", "03-02-07-01-01-01-01.wav", "songs have no such emotion"),
    ("ravdess", "03-01-05-01-01-01.wav", "does not follow RAVDESS"),
    ("ravdess", "03-01-05-01-01-01-1a.wav", "does not follow RAVDESS"),
    ("ravdess", "03-01-05-01-01-01-01.mp4", "RAVDESS audio-only files are .wav"),
    ("tess", "OAF_back.wav", "does not follow TESS"),
    ("tess", "XAF_back_angry.wav", "speaker 'XAF' is not a TESS speaker"),
    ("tess", "OA_bar_neutral.wav", "speaker 'OA' is not a TESS speaker"),  # only the known erratum is corrected
    ("tess", "OAF_back_bored.wav", "emotion 'bored' is not a TESS emotion"),
    ("tess", "OAF_back_angry_2.wav", "emotion 'angry_2' is not a TESS emotion"),
    ("tess", "OAF_b4ck_angry.wav", "target word 'b4ck' is not a word"),
    ("savee", "ALL/XX_a01.wav", "speaker 'XX' is not a SAVEE speaker"),
    ("savee", "AudioData/a01.wav", "speaker 'AudioData' is not a SAVEE speaker"),
    ("savee", "AudioData/ZZ/n01.wav", "speaker 'ZZ' is not a SAVEE speaker"),
    ("savee", "ALL/DC_x01.wav", "emotion code 'x' is not a SAVEE code"),
    ("savee", "ALL/DC_sx01.wav", "emotion code 'sx' is not a SAVEE code"),
    ("savee", "ALL/DC_a16.wav", "out of range 01-15"),
    ("savee", "ALL/DC_n31.wav", "out of range 01-30"),
    ("savee", "ALL/DC_a1.wav", "out of range"),
    ("savee", "ALL/DC-a01.wav", "does not follow SAVEE"),
    ("savee", "AudioData/JE/DC_a01.wav", "name says speaker 'DC' but the folder says 'JE'"),
    ("cremad", "1000_DFA_ANG_XX.wav", "actor '1000' is out of range 1001-1091"),
    ("cremad", "1092_DFA_ANG_XX.wav", "actor '1092' is out of range 1001-1091"),
    ("cremad", "1001_ABC_ANG_XX.wav", "sentence code 'ABC'"),
    ("cremad", "1001_DFA_CAL_XX.wav", "emotion code 'CAL'"),
    ("cremad", "1001_DFA_ANG_X.wav", "level code 'X'"),
    ("cremad", "1001_DFA_ANG.wav", "does not follow CREMA-D"),
    ("emodb", "17a01Fa.wav", "speaker code '17'"),
    ("emodb", "03a03Fa.wav", "text code 'a03'"),
    ("emodb", "03a01Xa.wav", "emotion code 'X'"),
    ("emodb", "03a01Fa1.wav", "does not follow EMO-DB"),
    ("emodb", "03a01fa.wav", "does not follow EMO-DB"),
    ("emodb", "readme.wav", "does not follow EMO-DB"),
]
"""(corpus, file name, what the rejection's reason says): one table for every loader."""


@pytest.mark.parametrize("corpus, name, reason", BAD_NAMES)
def test_bad_names_are_rejected_with_the_reason(tmp_path: Path, corpus: str, name: str, reason: str) -> None:
    touch(tmp_path, name)
    clips, (rejection,) = scan(corpus, tmp_path)
    assert clips == [] and rejection.kind == "rejected" and reason in rejection.reason


def test_the_bad_name_table_covers_every_corpus() -> None:
    assert {c for c, _, _ in BAD_NAMES} == set(LOADERS)


def test_a_custom_corpus_is_labelled_from_its_table_and_every_bad_row_is_a_rejection(tmp_path):
    from pipeline.corpora import custom

    root = tmp_path / "mine"
    for rel in ("a/x.wav", "a/y.wav", "b/z.flac", "b/extra.wav", "b/nolabel.wav", "b/nospk.wav"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"RIFF")        # the loader never opens the audio
    (root / "labels.csv").write_text("path,speaker,emotion,sex\n"
                                     "a/x.wav,s1,ang,f\n"
                                     "a/y.wav,s1,happy,F\n"
                                     "b/z.flac,s2,neu,\n"
                                     "a/x.wav,s1,ang,f\n"
                                     "b/gone.wav,s2,ang,m\n"
                                     "b/nolabel.wav,s2,meh,m\n"
                                     "b/nospk.wav,,ang,m\n")
    clips, rejections = custom.scan("mine", root, table="labels.csv", labels={"ang": "angry", "neu": "neutral"})
    assert [(c.clip_id, c.speaker, c.gender, c.emotion, c.source_label) for c in clips] == [
        ("mine:a__x", "mine:s1", "female", "angry", "ang"), ("mine:a__y", "mine:s1", "female", "happy", "happy"),
        ("mine:b__z", "mine:s2", "unknown", "neutral", "neu")]
    reasons = sorted((r.kind, r.reason.split(": ", 1)[1]) for r in rejections)
    assert reasons == [
        ("excluded", "not listed in labels.csv; add a row to label it"),
        ("rejected", "labels.csv row 5: lists 'a/x.wav' again (first on row 2); list each clip once"),
        ("rejected", "labels.csv row 6: file 'b/gone.wav' does not exist; fix the path or remove the row"),
        ("rejected", "labels.csv row 7: emotion 'meh' is not mapped; add it to custom.mine.labels (to one of "
                     "['neutral', 'calm', 'happy', 'sad', 'angry', 'fearful', 'disgust', 'surprised', 'boredom'])"),
        ("rejected", "labels.csv row 8: has no speaker; every clip needs one (the split is by speaker)")]


def test_a_custom_table_s_windows_paths_links_and_unlisted_files(tmp_path):
    from pipeline.corpora import custom

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.wav").write_bytes(b"RIFF")
    os.symlink(tmp_path / "a" / "x.wav", tmp_path / "a" / "alias.wav")
    os.symlink(tmp_path / "a" / "x.wav", tmp_path / "a" / "unlisted.wav")
    (tmp_path / "labels.csv").write_text("path,speaker,emotion\na\\x.wav,s1,angry\na/alias.wav,s2,angry\n")
    clips, rejections = custom.scan("mine", tmp_path, table="labels.csv", labels={})
    assert [c.clip_id for c in clips] == ["mine:a__x"]                      # a\x.wav read as a/x.wav
    assert sorted((r.kind, r.reason.split(": ", 1)[1]) for r in rejections) == [
        ("excluded", "not listed in labels.csv; add a row to label it"),    # the unlisted link
        ("rejected", "labels.csv row 3: 'a/alias.wav' is the same file as row 2 (a link); list each recording once")]


def test_a_custom_table_without_its_columns_is_refused_naming_the_file(tmp_path):
    from pipeline.corpora import custom

    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ParamsError, match=r"empty\.csv: the label table is empty"):
        custom.scan("mine", tmp_path, table="empty.csv", labels={})
    (tmp_path / "twice.csv").write_text("path,Path,speaker,emotion\nx.wav,y.wav,s1,ang\n")
    with pytest.raises(ParamsError, match=r"twice\.csv: the label table has column\(s\) \['path'\] more than once"):
        custom.scan("mine", tmp_path, table="twice.csv", labels={})
    (tmp_path / "labels.csv").write_text("file,who,label\nx.wav,s1,ang\n")
    with pytest.raises(ParamsError, match=r"labels\.csv: the label table has no column\(s\) \['path', 'speaker', "):
        custom.scan("mine", tmp_path, table="labels.csv", labels={})
    with pytest.raises(ParamsError, match=r"nope\.csv: custom\.mine\.table is not a file"):
        custom.scan("mine", tmp_path, table="nope.csv", labels={})

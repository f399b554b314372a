"""benchmarks.hlo's census reads HLO text as XLA prints it: convolutions keyed by their groups, library
calls by target, tuple-typed instructions counted too."""

from benchmarks.hlo import census, table

HLO = """
ENTRY %main {
  %p = f32[64,28,28,1]{3,2,1,0} parameter(0)
  %conv.1 = f32[64,26,26,32]{3,2,1,0} convolution(%p, %k), window={size=3x3}, dim_labels=b01f_01io->b01f
  %conv.2 = f32[64,26,26,128]{3,2,1,0} convolution(%p, %k4), window={size=3x3}, dim_labels=b01f_01io->b01f, feature_group_count=4
  %cc = (f32[64,11,11,64]{3,2,1,0}, u8[0]{0}) custom-call(%a, %b), custom_call_target="__cudnn$convForward", backend_config={}, feature_group_count=32
  %sas = f32[64,26,26,32]{3,2,1,0} select-and-scatter(%x, %g, %z), window={size=1x2x2x1 stride=1x2x2x1}
  %cv = s32[64]{0} convert(%l)
  ROOT %t = (f32[]) tuple(%cv)
}
"""


def test_the_census_names_grouped_convolutions_library_calls_and_scatters():
    counts = census(HLO)
    assert counts["convolution"] == 1 and counts["convolution [feature_group_count=4]"] == 1
    assert counts["custom-call __cudnn$convForward [feature_group_count=32]"] == 1
    assert counts["select-and-scatter"] == 1 and counts["convert"] == 1
    shown = table(counts, "t")
    assert "feature_group_count=32" in shown and "select-and-scatter" in shown and "convert" not in shown

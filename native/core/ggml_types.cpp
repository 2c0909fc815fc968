#include "core/ggml_types.h"

namespace lro {

namespace {

// Indexed by GGUF type id. Ids GGUF retired (4, 5: q4_2/q4_3; 31-33: q4_0_4_4/4_8/8_8;
// 36-38: iq4_nl_4_4/4_8/8_8) have no entry (name == nullptr) so a file using them is rejected
// instead of being read with a guessed layout.
constexpr GgmlTypeTraits kTraits[] = {
    /*  0 */ {"f32", 1, 4, true},
    /*  1 */ {"f16", 1, 2, true},
    /*  2 */ {"q4_0", 32, 18, true},
    /*  3 */ {"q4_1", 32, 20, false},
    /*  4 */ {nullptr, 0, 0, false},
    /*  5 */ {nullptr, 0, 0, false},
    /*  6 */ {"q5_0", 32, 22, false},
    /*  7 */ {"q5_1", 32, 24, false},
    /*  8 */ {"q8_0", 32, 34, true},
    /*  9 */ {"q8_1", 32, 36, false},
    /* 10 */ {"q2_K", 256, 84, false},
    /* 11 */ {"q3_K", 256, 110, false},
    /* 12 */ {"q4_K", 256, 144, true},
    /* 13 */ {"q5_K", 256, 176, false},
    /* 14 */ {"q6_K", 256, 210, true},
    /* 15 */ {"q8_K", 256, 292, false},
    /* 16 */ {"iq2_xxs", 256, 66, false},
    /* 17 */ {"iq2_xs", 256, 74, false},
    /* 18 */ {"iq3_xxs", 256, 98, false},
    /* 19 */ {"iq1_s", 256, 50, false},
    /* 20 */ {"iq4_nl", 32, 18, false},
    /* 21 */ {"iq3_s", 256, 110, false},
    /* 22 */ {"iq2_s", 256, 82, false},
    /* 23 */ {"iq4_xs", 256, 136, false},
    /* 24 */ {"i8", 1, 1, false},
    /* 25 */ {"i16", 1, 2, false},
    /* 26 */ {"i32", 1, 4, false},
    /* 27 */ {"i64", 1, 8, false},
    /* 28 */ {"f64", 1, 8, false},
    /* 29 */ {"iq1_m", 256, 56, false},
    /* 30 */ {"bf16", 1, 2, true},
    /* 31 */ {nullptr, 0, 0, false},
    /* 32 */ {nullptr, 0, 0, false},
    /* 33 */ {nullptr, 0, 0, false},
    /* 34 */ {"tq1_0", 256, 54, false},
    /* 35 */ {"tq2_0", 256, 66, false},
    /* 36 */ {nullptr, 0, 0, false},
    /* 37 */ {nullptr, 0, 0, false},
    /* 38 */ {nullptr, 0, 0, false},
    /* 39 */ {"mxfp4", 32, 17, false},
    /* 40 */ {"nvfp4", 64, 36, false},
    /* 41 */ {"q1_0", 128, 18, false},
};
constexpr uint32_t kNumTraits = sizeof(kTraits) / sizeof(kTraits[0]);

}  // namespace

const GgmlTypeTraits* ggml_type_traits(uint32_t type_id) {
  if (type_id >= kNumTraits || kTraits[type_id].name == nullptr) return nullptr;
  return &kTraits[type_id];
}

}  // namespace lro

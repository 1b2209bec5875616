// Composing separately prefilled (and separately compressed) contexts into one cache for a
// question over several documents: [system prompt | C1 | C2 | ... | Ck]. Every context was
// prefilled after the same system prompt, so each document's rows sit at positions
// n_sys + t; in the composed cache document i starts where the documents before it end (in
// positions, not kept pairs), so its rows move by the sum of their lengths and their keys
// are re-rotated by that shift (model/rope_shift.h). The system prompt's rows come once, from
// the first context. What composing cannot restore, and what the evaluation measures
// (docs/composition.md): a document's rows were computed without attending to the documents
// now before it, and at distances from the system prompt that were shorter.
//
// Sliding-window layers (Gemma 3) keep, as any cache does, only the rows a query after the
// last document can see: the last n_swa positions, i.e. the last document's window and, when
// that document is shorter than the window, the end of the one before it (each context kept
// its own last window, so those rows are all there).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cache/head_cache.h"
#include "io/context_store.h"
#include "model/model.h"

namespace kvz {

struct ComposePart {
  const StoredContext* meta = nullptr;
  const KvCache* cache = nullptr;
  std::string name;  // for errors ("a.kvz", a context id)
};

struct ComposedContext {
  StoredContext meta;   // sys ids, every context's ids in order, n_pos, scores when all have them
  KvCache cache;
  std::vector<int64_t> starts;  // [k] context-token index where each document begins
};

// Composes `parts` (at least one; all made on model m with the same system prompt, holding
// their document only: a context with a conversation after it is refused) into rows of
// type `type` (parts stored otherwise are converted through f32, approximately). One part
// alone comes back bit for bit (sliding-window rows no query can see dropped). Scores are
// concatenated when every part has them, so the result can be pruned again; pruned is set
// when any part was. Throws kvz::Error naming the part.
ComposedContext compose_contexts(const Model& m, std::span<const ComposePart> parts, KvType type);

}  // namespace kvz

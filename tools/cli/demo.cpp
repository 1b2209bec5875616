// `kvzip demo`: a generated registry document full of facts, its questions answered from the
// full and from the compressed cache (`ask --compare-full` on a document whose answers are
// known), with right answers counted beside exact matches.
#include "ask.h"
#include "eval/demo_doc.h"

namespace kvz::cli {

CLI::App* add_demo_command(CLI::App& app, DemoOpts& d) {
  auto* demo = app.add_subcommand("demo",
                                  "the KVzip demo: a generated registry document full of facts, questions answered "
                                  "from the full and from the compressed cache; counts the answers that contain the "
                                  "expected fact and those identical to the full cache's");
  add_compression_options(demo, d.a.c);
  demo->add_flag("--query-aware", d.a.c.query_aware, "score with each question present (cache rebuilt per question)");
  demo->add_option("-n,--n-predict", d.a.n_predict, "max answer tokens")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  demo->add_option("--records", d.records, "fact records in the document (~50 tokens each)")
      ->capture_default_str()
      ->check(CLI::Range(8, 40));
  return demo;
}

int run_demo_command(const CLI::App& cmd, const DemoOpts& d) {
  check_flags(cmd, "`kvzip demo`",
              {{"--retain-full", true, "the demo saves nothing; `kvzip compress --retain-full` does"},
               {"--compress-for", true, "the demo compresses once for all its questions"}});
  const QaSample sample = make_demo_document(d.records);
  AskOpts a = d.a;
  a.c.context_file = "the demo document";
  a.questions = sample.questions;
  a.compare_full = true;
  Out{a.c.json}.print("kvzip demo: a generated registry of {} fact records; {} questions; keep ratio {}\n\n", d.records,
                      sample.questions.size(), a.c.ratio);
  return ask_from_text(cmd, a, sample.context, sample.answers);
}

}  // namespace kvz::cli

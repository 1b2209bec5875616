#include "eval/demo_doc.h"

#include <algorithm>
#include <random>

#include "core/error.h"

namespace kvz {

namespace {

const char* kFirst[] = {"Marta", "Olek", "Priya", "Tomas", "Ines", "Bram", "Yuki", "Lena", "Rafael", "Noor",
                        "Casimir", "Hedda", "Jonah", "Saskia", "Emil", "Ada", "Kofi", "Mirela", "Anselm", "Freya"};
const char* kLast[] = {"Quill", "Varga", "Lindqvist", "Okafor", "Marchetti", "Holm", "Tanaka", "Brandt",
                       "Castell", "Dervish", "Ferreira", "Ishikawa", "Kowalski", "Moreau", "Novak", "Reyes"};
const char* kTown[] = {"Port Elwin", "Harrowgate", "Lindenfeld", "Saltmarsh", "Corvallis Bay", "Eastmere",
                       "Kestrel Rock", "Wyndham", "Oldbridge", "Marrowdale", "Fennick", "Stonehaven"};
const char* kJob[] = {"lighthouse keeper", "harbour master", "head librarian", "chief baker",   "town clerk",
                      "ferry captain",     "school principal", "museum curator", "fire chief",   "postmaster",
                      "bell ringer",       "night watchman",  "beekeeper",      "clockmaker",   "blacksmith",
                      "ship's doctor",     "organ player",    "tax collector",  "gardener",     "chief judge",
                      "cartographer",      "glassblower",     "weaver",         "stonemason",   "astronomer",
                      "herbalist",         "innkeeper",       "ropemaker",      "cooper",       "tailor",
                      "goldsmith",         "shepherd",        "chimney sweep",  "bookbinder",   "candle maker",
                      "bridge warden",     "falconer",        "ice cutter",     "map seller",   "salt trader"};
const char* kColor[] = {"red", "blue", "green", "yellow", "white", "black", "orange", "purple"};
const char* kAnimal[] = {"a grey cat", "an old sheepdog", "a green parrot", "two goats", "a tortoise",
                         "a white horse", "a ferret", "three hens"};

template <size_t N>
const char* pick(const char* const (&a)[N], std::mt19937_64& rng) {
  return a[rng() % N];
}

}  // namespace

QaSample make_demo_document(int n_records, uint64_t seed, int n_questions) {
  constexpr int kMaxRecords = static_cast<int>(std::size(kJob));  // one record per job
  if (n_records < 1 || n_records > kMaxRecords || n_questions < 1 || n_questions > n_records)
    fail("demo document: need 1 <= questions ({}) <= records ({}) <= {}", n_questions, n_records, kMaxRecords);
  std::mt19937_64 rng(seed);
  QaSample s;
  s.context = "The Coastal Registry of Trades. For each trade on the coast, this registry names the one person "
              "who practises it, where they live, when they started, and a few details the clerks recorded.\n\n";
  struct Rec {
    std::string name, town, job, color, animal;
    int year, boats;
  };
  std::vector<Rec> recs;
  std::vector<std::pair<std::string, std::string>> used;  // (town, job) must be unique
  while (static_cast<int>(recs.size()) < n_records) {
    Rec r{std::string(pick(kFirst, rng)) + " " + pick(kLast, rng), pick(kTown, rng), pick(kJob, rng),
          pick(kColor, rng), pick(kAnimal, rng), 1950 + static_cast<int>(rng() % 70), 2 + static_cast<int>(rng() % 40)};
    if (std::find_if(used.begin(), used.end(), [&](const auto& u) { return u.second == r.job; }) != used.end()) continue;
    used.emplace_back(r.town, r.job);
    recs.push_back(r);
  }
  for (const auto& r : recs)
    s.context += "The " + r.job + " is " + r.name + ", who lives in " + r.town + " and started the job in " +
                 std::to_string(r.year) + ". The " + r.job + " lives in a " + r.color + " house with " + r.animal +
                 " and owns " + std::to_string(r.boats) + " books.\n";
  // Questions on records spread over the whole document.
  for (int q = 0; q < n_questions; ++q) {
    const Rec& r = recs[(static_cast<size_t>(q) * recs.size()) / n_questions + rng() % std::max<size_t>(1, recs.size() / n_questions)];
    switch (q % 3) {
      case 0:
        s.questions.push_back("Who is the " + r.job + "?");
        s.answers.push_back(r.name);
        break;
      case 1:
        s.questions.push_back("In which year did the " + r.job + " start the job?");
        s.answers.push_back(std::to_string(r.year));
        break;
      default:
        s.questions.push_back("What colour is the house of the " + r.job + "?");
        s.answers.push_back(r.color);
        break;
    }
  }
  return s;
}

}  // namespace kvz

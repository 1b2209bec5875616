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
const char* kJob[] = {"lighthouse keeper", "harbour master", "head librarian", "chief baker", "town clerk",
                      "ferry captain", "school principal", "museum curator", "fire chief", "postmaster"};
const char* kColor[] = {"red", "blue", "green", "yellow", "white", "black", "orange", "purple"};
const char* kAnimal[] = {"a grey cat", "an old sheepdog", "a green parrot", "two goats", "a tortoise",
                         "a white horse", "a ferret", "three hens"};

template <size_t N>
const char* pick(const char* const (&a)[N], std::mt19937_64& rng) {
  return a[rng() % N];
}

}  // namespace

QaSample make_demo_document(int n_records, uint64_t seed, int n_questions) {
  if (n_records < 1 || n_questions < 1 || n_questions > n_records)
    fail("demo document: need 1 <= questions ({}) <= records ({})", n_questions, n_records);
  std::mt19937_64 rng(seed);
  QaSample s;
  s.context = "The Coastal Registry of Towns and Trades. This registry lists, for each town on the coast, the "
              "person who holds each public office, when they took office, and a few details the clerks "
              "recorded about them.\n\n";
  struct Rec {
    std::string name, town, job, color, animal;
    int year, boats;
  };
  std::vector<Rec> recs;
  std::vector<std::pair<std::string, std::string>> used;  // (town, job) must be unique
  while (static_cast<int>(recs.size()) < n_records) {
    Rec r{std::string(pick(kFirst, rng)) + " " + pick(kLast, rng), pick(kTown, rng), pick(kJob, rng),
          pick(kColor, rng), pick(kAnimal, rng), 1950 + static_cast<int>(rng() % 70), 2 + static_cast<int>(rng() % 40)};
    if (std::find(used.begin(), used.end(), std::make_pair(r.town, r.job)) != used.end()) continue;
    used.emplace_back(r.town, r.job);
    recs.push_back(r);
  }
  for (const auto& r : recs)
    s.context += "The " + r.job + " of " + r.town + " is " + r.name + ", who took office in " +
                 std::to_string(r.year) + ". " + r.name + " lives in a " + r.color + " house with " + r.animal +
                 ", and the town registers " + std::to_string(r.boats) + " fishing boats.\n";
  // Questions on records spread over the whole document.
  for (int q = 0; q < n_questions; ++q) {
    const Rec& r = recs[(static_cast<size_t>(q) * recs.size()) / n_questions + rng() % std::max<size_t>(1, recs.size() / n_questions)];
    switch (q % 3) {
      case 0:
        s.questions.push_back("Who is the " + r.job + " of " + r.town + "?");
        s.answers.push_back(r.name);
        break;
      case 1:
        s.questions.push_back("In which year did the " + r.job + " of " + r.town + " take office?");
        s.answers.push_back(std::to_string(r.year));
        break;
      default:
        s.questions.push_back("What colour is the house of the " + r.job + " of " + r.town + "?");
        s.answers.push_back(r.color);
        break;
    }
  }
  return s;
}

}  // namespace kvz

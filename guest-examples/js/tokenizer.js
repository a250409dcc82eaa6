// A stateless operator that splits each input value (a line of text) into words: maximal runs
// of alphanumeric characters (Unicode Alphabetic or Numeric, as Rust's `char::is_alphanumeric`),
// lower-cased as Rust's `str::to_lowercase` does. It emits one record per word, with the word as
// both key and value and the line's timestamp. Bytes that are not UTF-8 separate words. (The
// Rust `tokenizer`, in JS.)

import { Operator, register } from "../../sdk/js/jobhost/index.js";
import { ALPHANUMERIC_CLASS, CASED_CLASS, CASE_IGNORABLE_CLASS } from "./lib/unicode.js";

// `/[\p{Alphabetic}\p{N}]+/gu` and the like, spelt out: the engine of componentize-js
// (SpiderMonkey without ICU) compiles no Unicode property escapes.
const WORD = new RegExp(`[${ALPHANUMERIC_CLASS}]+`, "gu");
const CASED = new RegExp(`^[${CASED_CLASS}]$`, "u");
const CASE_IGNORABLE = new RegExp(`^[${CASE_IGNORABLE_CLASS}]$`, "u");

/**
 * Whether, skipping case-ignorable code points, the first of `chars` from `i` in steps of `step`
 * is cased (Unicode's Final_Sigma context, as Rust's `to_lowercase` checks it).
 */
function casedAfterIgnorable(chars, i, step) {
  for (; i >= 0 && i < chars.length; i += step) {
    if (!CASE_IGNORABLE.test(chars[i])) return CASED.test(chars[i]);
  }
  return false;
}

/** `word.toLowerCase()`, with Σ at the end of a word as ς (which this engine leaves out). */
export function lowerCase(word) {
  if (!word.includes("Σ")) return word.toLowerCase();
  const chars = [...word];
  let lower = "";
  for (let i = 0; i < chars.length; i++) {
    if (chars[i] !== "Σ") {
      lower += chars[i].toLowerCase();
    } else {
      const final = casedAfterIgnorable(chars, i - 1, -1) && !casedAfterIgnorable(chars, i + 1, 1);
      lower += final ? "ς" : "σ";
    }
  }
  return lower;
}

export class Tokenizer extends Operator {
  name = "tokenizer";
  version = "1.0.0";

  process(records, _keyed, out) {
    for (const r of records) {
      for (const [word] of r.valueText().matchAll(WORD)) {
        const lower = lowerCase(word);
        out.push(lower, lower, r.timestamp);
      }
    }
  }
}

register(Tokenizer);

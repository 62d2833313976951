# frozen_string_literal: true

require_relative "channel"

module Ciq
  # Rules shared by the frameworks' test ids (README, "Test ids").
  module Ids
    # One line of valid UTF-8: ciq refuses ids with a newline or invalid bytes, so control
    # characters are written as Ruby escapes (a newline as the two characters \n) and invalid
    # bytes as \xFF.
    def self.escape(text)
      Ciq.clean(text.to_s).gsub(/[[:cntrl:]]/) { |char| char.dump[1..-2] }
    end

    # The ids, with every repeat of an earlier id made distinct by " (2)", " (3)", ... in
    # order, skipping any number that would give an id already in the list.
    def self.unique(ids)
      taken = ids.to_h { |id| [id, true] }
      seen = {}
      ids.map do |id|
        unless seen[id]
          seen[id] = true
          next id
        end
        n = 2
        n += 1 while taken["#{id} (#{n})"] || seen["#{id} (#{n})"]
        seen["#{id} (#{n})"] = true
        "#{id} (#{n})"
      end
    end
  end
end

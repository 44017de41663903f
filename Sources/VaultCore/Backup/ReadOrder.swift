/// The order in which a backup's workers take a disk's data positions: runs of `run`
/// consecutive positions, taken in turn from `stripes` equal parts of the disk. A worker takes
/// a whole run and reads it with one request where its positions are consecutive.
///
/// A disk's changes come in clusters (a database's files, a log's tail), and a changed chunk
/// costs the cores some thirty times what an unchanged one does (zstd and SHA-256 against a
/// GMAC: about 3.7 ms against 0.06 ms of CPU per MiB, from a profile of the corpus's v3
/// incremental), while an unchanged one costs mostly the disk's read. Read front to back, an
/// incremental waits on the disk through the unchanged stretches with the cores idle, then on
/// the cores through a changed cluster with the disk idle: the two times add up. Taken from
/// several parts at once, any cluster larger than a part is spread over the whole backup, and
/// the disk and the cores work at the same time. A rotating disk seeks once per run rather
/// than once per chunk.
///
/// Claim `k` names the `k`-th position to take; run `r` is claims `r * run ..< (r + 1) * run`.
/// The claims cover `0..<claims`, a little more than the positions: a claim past the last
/// position (in the last, short run) names none.
struct ReadOrder {
    let count: Int
    let stripes: Int
    let run: Int
    /// How many runs, the last one possibly short.
    let runs: Int

    /// The bytes of a run: one read of the disk. On the bench machine's virtual disk, reads of
    /// the corpus image's 826 data chunks with `O_DIRECT` into huge pages took 0.32-0.34 s in
    /// 4 MiB requests against 0.60-0.69 s in 1 MiB ones (sixteen readers, three rounds each, in
    /// turns); into small pages, 4 MiB took 0.46-0.51 s, as the kernel splits a request at 254
    /// pages.
    static let runBytes = 4 << 20

    /// An order for `workers` workers taking `count` positions of `chunkSize` bytes: runs of
    /// `runBytes`, and a stripe for every four workers, so the runs the workers hold at any
    /// time come from every stripe.
    init(count: Int, workers: Int, chunkSize: Int) {
        self.init(count: count, stripes: max(1, workers / 4), run: max(1, Self.runBytes / chunkSize))
    }

    init(count: Int, stripes: Int, run: Int) {
        precondition(count >= 0 && stripes >= 1 && run >= 1)
        self.count = count
        self.stripes = stripes
        self.run = run
        runs = (count + run - 1) / run
    }

    /// How many claims there are.
    var claims: Int { runs * run }

    /// The indices of the positions run `r` takes, in order (fewer than `run` only in the last).
    func indices(ofRun r: Int) -> [Int] {
        (r * run..<(r + 1) * run).compactMap { index(ofClaim: $0) }
    }

    /// The index of the position claim `k` names, or nil for a claim past the last position.
    func index(ofClaim k: Int) -> Int? {
        guard k >= 0, k < claims else { return nil }
        // Runs are shared out as evenly as they go: the first `longer` stripes hold one more.
        let perStripe = runs / stripes
        let longer = runs % stripes
        let turn = k / run
        let stripe: Int
        let inStripe: Int
        if turn < perStripe * stripes {
            stripe = turn % stripes
            inStripe = turn / stripes
        } else {
            stripe = turn - perStripe * stripes
            inStripe = perStripe
        }
        let runIndex = stripe * perStripe + min(stripe, longer) + inStripe
        let index = runIndex * run + k % run
        return index < count ? index : nil
    }
}

import KVCommon

/// The master's decision-log directory, simulated: generation files of records, each with a durable prefix, the
/// state file (replaced atomically), and which master process holds the directory.
///
/// A crash keeps what was durable and, of what was appended since the last fsync, a random prefix (a write can
/// reach the disk without its fsync). Deleting a file or replacing the state file is durable at once.
final class SimMasterDisk {
    struct File {
        var records: [DecisionRecord] = []
        var durable = 0
    }

    private(set) var files: [UInt64: File] = [:]
    /// The generation appends go to.
    private(set) var current: UInt64 = 1
    private(set) var state: MasterState?
    /// The master instance holding the directory's lock, if any.
    var lockHolder: Int?

    var unsynced: Int { files[current].map { $0.records.count - $0.durable } ?? 0 }

    /// Every generation, oldest first, as a start-up reads it.
    var generations: [DecisionJournal.Generation] {
        if files.isEmpty { return [DecisionJournal.Generation(number: 1, records: [])] }
        return files.keys.sorted().map { DecisionJournal.Generation(number: $0, records: files[$0]!.records) }
    }

    /// A start-up opens the newest generation for appending (creating generation 1 in a new directory).
    func open() {
        current = files.keys.max() ?? 1
        if files[current] == nil { files[current] = File() }
    }

    func append(_ records: [DecisionRecord]) {
        files[current, default: File()].records += records
    }

    /// The first `count` unsynced records of the current generation (all when nil) become durable; returns them.
    func sync(count: Int? = nil) -> [DecisionRecord] {
        guard var file = files[current] else { return [] }
        let end = min(file.records.count, file.durable + (count ?? file.records.count))
        let synced = Array(file.records[file.durable..<end])
        file.durable = end
        files[current] = file
        return synced
    }

    /// Switches appends to a new generation; the old one is synced first (as `GroupCommitLog.rotate` does).
    func rotate(to generation: UInt64) -> [DecisionRecord] {
        let synced = sync()
        current = generation
        files[generation] = File()
        return synced
    }

    func delete(_ generation: UInt64) { files[generation] = nil }

    func write(_ state: MasterState) { self.state = state }

    /// A copy of the directory as it is durably now (a backup an operator might restore).
    func backup() -> (files: [UInt64: File], state: MasterState?) {
        (files.mapValues { File(records: Array($0.records.prefix($0.durable)), durable: $0.durable) }, state)
    }

    /// Replaces the directory with `backup` (restored while no master runs).
    func restore(_ backup: (files: [UInt64: File], state: MasterState?)) {
        files = backup.files
        state = backup.state
        current = files.keys.max() ?? 1
    }

    /// What survives a crash of the process appending: each file's durable records plus a random prefix of the
    /// rest, which is then durable too (returned: a write can reach the disk without its fsync).
    func crash(random: inout SimRandom) -> [DecisionRecord] {
        var kept: [DecisionRecord] = []
        for number in files.keys.sorted() {
            let file = files[number]!
            guard file.records.count > file.durable else { continue }
            let end = file.durable + random.below(file.records.count - file.durable + 1)
            kept += file.records[file.durable..<end]
            files[number] = File(records: Array(file.records.prefix(end)), durable: end)
        }
        return kept
    }
}
